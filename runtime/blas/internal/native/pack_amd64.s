//go:build amd64 && !purego

#include "textflag.h"

// Packing routines for the native GEMM. They use 128-bit VEX
// instructions: on the cores this was tuned on (Zen) a 256-bit shuffle
// costs two 128-bit ones, and the 4×4 transpose stays in-lane.

// func interleave4(kc int, src *float32, ld int, dst *float32, stride int)
//
// dst[p*stride+r] = src[r*ld+p] for r < 4, p < kc: four rows of src
// (row stride ld elements) become kc groups of four adjacent floats,
// stride elements apart.
TEXT ·interleave4(SB), NOSPLIT, $0-40
	MOVQ kc+0(FP), CX
	MOVQ src+8(FP), SI
	MOVQ ld+16(FP), R8
	MOVQ dst+24(FP), DI
	MOVQ stride+32(FP), R9
	SHLQ $2, R8                 // ld in bytes
	SHLQ $2, R9                 // stride in bytes
	LEAQ (R8)(R8*2), R10        // 3·ld
	LEAQ (R9)(R9*2), R11        // 3·stride

	CMPQ CX, $4
	JLT  tail4

loop4:
	VMOVUPS   (SI), X0           // a0 a1 a2 a3
	VMOVUPS   (SI)(R8*1), X1     // b0 b1 b2 b3
	VMOVUPS   (SI)(R8*2), X2     // c0 ..
	VMOVUPS   (SI)(R10*1), X3    // d0 ..
	VUNPCKLPS X1, X0, X4         // a0 b0 a1 b1
	VUNPCKHPS X1, X0, X5         // a2 b2 a3 b3
	VUNPCKLPS X3, X2, X6         // c0 d0 c1 d1
	VUNPCKHPS X3, X2, X7         // c2 d2 c3 d3
	VUNPCKLPD X6, X4, X0         // a0 b0 c0 d0
	VUNPCKHPD X6, X4, X1         // a1 b1 c1 d1
	VUNPCKLPD X7, X5, X2         // a2 b2 c2 d2
	VUNPCKHPD X7, X5, X3         // a3 b3 c3 d3
	VMOVUPS   X0, (DI)
	VMOVUPS   X1, (DI)(R9*1)
	VMOVUPS   X2, (DI)(R9*2)
	VMOVUPS   X3, (DI)(R11*1)
	ADDQ      $16, SI
	LEAQ      (DI)(R9*4), DI
	SUBQ      $4, CX
	CMPQ      CX, $4
	JGE       loop4

tail4:
	TESTQ CX, CX
	JEQ   done4

loop1:
	VMOVSS (SI), X0
	VMOVSS (SI)(R8*1), X1
	VMOVSS (SI)(R8*2), X2
	VMOVSS (SI)(R10*1), X3
	VMOVSS X0, (DI)
	VMOVSS X1, 4(DI)
	VMOVSS X2, 8(DI)
	VMOVSS X3, 12(DI)
	ADDQ   $4, SI
	ADDQ   R9, DI
	DECQ   CX
	JNE    loop1

done4:
	RET

// func interleave2(kc int, src *float32, ld int, dst *float32, stride int)
//
// dst[p*stride+r] = src[r*ld+p] for r < 2, p < kc.
TEXT ·interleave2(SB), NOSPLIT, $0-40
	MOVQ kc+0(FP), CX
	MOVQ src+8(FP), SI
	MOVQ ld+16(FP), R8
	MOVQ dst+24(FP), DI
	MOVQ stride+32(FP), R9
	SHLQ $2, R8
	SHLQ $2, R9
	LEAQ (R9)(R9*2), R11

	CMPQ CX, $4
	JLT  tail2

loop2x4:
	VMOVUPS   (SI), X0           // a0 a1 a2 a3
	VMOVUPS   (SI)(R8*1), X1     // b0 b1 b2 b3
	VUNPCKLPS X1, X0, X4         // a0 b0 a1 b1
	VUNPCKHPS X1, X0, X5         // a2 b2 a3 b3
	VMOVLPS   X4, (DI)
	VMOVHPS   X4, (DI)(R9*1)
	VMOVLPS   X5, (DI)(R9*2)
	VMOVHPS   X5, (DI)(R11*1)
	ADDQ      $16, SI
	LEAQ      (DI)(R9*4), DI
	SUBQ      $4, CX
	CMPQ      CX, $4
	JGE       loop2x4

tail2:
	TESTQ CX, CX
	JEQ   done2

loop2x1:
	VMOVSS (SI), X0
	VMOVSS (SI)(R8*1), X1
	VMOVSS X0, (DI)
	VMOVSS X1, 4(DI)
	ADDQ   $4, SI
	ADDQ   R9, DI
	DECQ   CX
	JNE    loop2x1

done2:
	RET

// func copy6(kc int, src *float32, ld int, dst *float32)
//
// dst[p*6+j] = src[p*ld+j] for j < 6, p < kc.
TEXT ·copy6(SB), NOSPLIT, $0-32
	MOVQ kc+0(FP), CX
	MOVQ src+8(FP), SI
	MOVQ ld+16(FP), R8
	MOVQ dst+24(FP), DI
	SHLQ $2, R8
	TESTQ CX, CX
	JEQ  done6

loop6:
	VMOVUPS (SI), X0
	VMOVSD  16(SI), X1
	VMOVUPS X0, (DI)
	VMOVSD  X1, 16(DI)
	ADDQ    R8, SI
	ADDQ    $24, DI
	DECQ    CX
	JNE     loop6

done6:
	RET

// func copyRows16(kc int, src *float32, ld int, dst *float32, np, pstride int)
//
// dst[q*pstride+p*16+j] = src[p*ld+q*16+j] for j < 16, q < np, p < kc:
// np 16-wide panels packed row by row, so src is read sequentially.
TEXT ·copyRows16(SB), NOSPLIT, $0-48
	MOVQ kc+0(FP), CX
	MOVQ src+8(FP), SI
	MOVQ ld+16(FP), R8
	MOVQ dst+24(FP), DI
	MOVQ np+32(FP), R10
	MOVQ pstride+40(FP), R11
	SHLQ $2, R8
	SHLQ $2, R11
	TESTQ CX, CX
	JEQ  donerows
	TESTQ R10, R10
	JEQ  donerows

rowloop:
	MOVQ SI, AX
	MOVQ DI, BX
	MOVQ R10, DX

panelloop:
	VMOVUPS (AX), X0
	VMOVUPS 16(AX), X1
	VMOVUPS 32(AX), X2
	VMOVUPS 48(AX), X3
	VMOVUPS X0, (BX)
	VMOVUPS X1, 16(BX)
	VMOVUPS X2, 32(BX)
	VMOVUPS X3, 48(BX)
	ADDQ    $64, AX
	ADDQ    R11, BX
	DECQ    DX
	JNE     panelloop

	ADDQ R8, SI
	ADDQ $64, DI
	DECQ CX
	JNE  rowloop

donerows:
	RET

