//go:build amd64 && !purego

#include "textflag.h"

// The 6×16 float32 micro-kernel: twelve YMM accumulators (Y0–Y11, two per
// row of the tile) take one rank-1 update per k step from a broadcast
// element of the A micro-panel (6 adjacent floats per k, astride floats
// apart: packed, or a transposed A read in place) and two vectors of the
// packed B micro-panel (16 floats per k). Y12/Y13 hold B, Y14/Y15 the
// broadcasts, so the loop needs no spills.

// STEP is one k step; bo is the byte offset of its B data. It advances
// the A pointer SI by the A stride R11.
#define STEP(bo) \
	VMOVUPS      bo(DI), Y12; \
	VMOVUPS      bo+32(DI), Y13; \
	VBROADCASTSS (SI), Y14; \
	VFMADD231PS  Y12, Y14, Y0; \
	VFMADD231PS  Y13, Y14, Y1; \
	VBROADCASTSS 4(SI), Y15; \
	VFMADD231PS  Y12, Y15, Y2; \
	VFMADD231PS  Y13, Y15, Y3; \
	VBROADCASTSS 8(SI), Y14; \
	VFMADD231PS  Y12, Y14, Y4; \
	VFMADD231PS  Y13, Y14, Y5; \
	VBROADCASTSS 12(SI), Y15; \
	VFMADD231PS  Y12, Y15, Y6; \
	VFMADD231PS  Y13, Y15, Y7; \
	VBROADCASTSS 16(SI), Y14; \
	VFMADD231PS  Y12, Y14, Y8; \
	VFMADD231PS  Y13, Y14, Y9; \
	VBROADCASTSS 20(SI), Y15; \
	VFMADD231PS  Y12, Y15, Y10; \
	VFMADD231PS  Y13, Y15, Y11

// ROWBETA stores one row of the tile as acc + beta·C (Y13 = beta).
#define ROWBETA(r0, r1) \
	VFMADD231PS (DX), Y13, r0; \
	VFMADD231PS 32(DX), Y13, r1; \
	VMOVUPS     r0, (DX); \
	VMOVUPS     r1, 32(DX); \
	ADDQ        R8, DX

// ROWSTORE stores one row of the tile as acc, not reading C.
#define ROWSTORE(r0, r1) \
	VMOVUPS r0, (DX); \
	VMOVUPS r1, 32(DX); \
	ADDQ    R8, DX

// func kernel6x16(kc int, a *float32, astride int, b, c *float32, ldc int, alpha, beta float32)
//
// C[0:6, 0:16] = alpha·A·B + beta·C, with A as kc groups of 6 floats
// astride floats apart (6 when packed), B packed as kc×16, C row-major
// with row stride ldc (elements). beta == 0 (either sign) does not read C.
TEXT ·kernel6x16(SB), NOSPLIT, $0-56
	MOVQ kc+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ astride+16(FP), R11
	SHLQ $2, R11
	MOVQ b+24(FP), DI
	MOVQ c+32(FP), DX
	MOVQ ldc+40(FP), R8
	SHLQ $2, R8

	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	VXORPS Y10, Y10, Y10
	VXORPS Y11, Y11, Y11

	// Touch the C tile early so its lines arrive while the loop runs.
	MOVQ      DX, R9
	PREFETCHT0 (R9)
	PREFETCHT0 60(R9)
	ADDQ      R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 60(R9)
	ADDQ      R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 60(R9)
	ADDQ      R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 60(R9)
	ADDQ      R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 60(R9)
	ADDQ      R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 60(R9)

	CMPQ CX, $4
	JLT  tail

loop4:
	STEP(0)
	ADDQ R11, SI
	STEP(64)
	ADDQ R11, SI
	STEP(128)
	ADDQ R11, SI
	STEP(192)
	ADDQ R11, SI
	ADDQ $256, DI
	SUBQ $4, CX
	CMPQ CX, $4
	JGE  loop4

tail:
	TESTQ CX, CX
	JEQ   done

loop1:
	STEP(0)
	ADDQ R11, SI
	ADDQ $64, DI
	DECQ CX
	JNE  loop1

done:
	VBROADCASTSS alpha+48(FP), Y12
	VMULPS       Y12, Y0, Y0
	VMULPS       Y12, Y1, Y1
	VMULPS       Y12, Y2, Y2
	VMULPS       Y12, Y3, Y3
	VMULPS       Y12, Y4, Y4
	VMULPS       Y12, Y5, Y5
	VMULPS       Y12, Y6, Y6
	VMULPS       Y12, Y7, Y7
	VMULPS       Y12, Y8, Y8
	VMULPS       Y12, Y9, Y9
	VMULPS       Y12, Y10, Y10
	VMULPS       Y12, Y11, Y11

	MOVL  beta+52(FP), AX
	TESTL $0x7fffffff, AX
	JEQ   nobeta

	VBROADCASTSS beta+52(FP), Y13
	ROWBETA(Y0, Y1)
	ROWBETA(Y2, Y3)
	ROWBETA(Y4, Y5)
	ROWBETA(Y6, Y7)
	ROWBETA(Y8, Y9)
	ROWBETA(Y10, Y11)
	VZEROUPPER
	RET

nobeta:
	ROWSTORE(Y0, Y1)
	ROWSTORE(Y2, Y3)
	ROWSTORE(Y4, Y5)
	ROWSTORE(Y6, Y7)
	ROWSTORE(Y8, Y9)
	ROWSTORE(Y10, Y11)
	VZEROUPPER
	RET
