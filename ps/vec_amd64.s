//go:build amd64 && !purego

#include "textflag.h"

// AVX2 kernels for vec.go. Each processes 32 values per iteration, then 8,
// then one at a time, and ends with VZEROUPPER. No fused multiply-add: the
// results equal the Go loops' bit for bit.

// func anyNonFiniteAVX2(g []float32) bool
TEXT ·anyNonFiniteAVX2(SB), NOSPLIT, $0-25
	MOVQ g_base+0(FP), SI
	MOVQ g_len+8(FP), CX
	MOVL $0x7f800000, AX
	MOVQ AX, X0
	VPBROADCASTD X0, Y0      // exponent mask
	VPXOR Y1, Y1, Y1         // lanes that saw a non-finite value
	CMPQ CX, $32
	JB   nf8

nf32:
	VPAND    (SI), Y0, Y2
	VPAND    32(SI), Y0, Y3
	VPAND    64(SI), Y0, Y4
	VPAND    96(SI), Y0, Y5
	VPCMPEQD Y0, Y2, Y2
	VPCMPEQD Y0, Y3, Y3
	VPCMPEQD Y0, Y4, Y4
	VPCMPEQD Y0, Y5, Y5
	VPOR     Y2, Y3, Y2
	VPOR     Y4, Y5, Y4
	VPOR     Y2, Y1, Y1
	VPOR     Y4, Y1, Y1
	ADDQ     $128, SI
	SUBQ     $32, CX
	CMPQ     CX, $32
	JAE      nf32

nf8:
	CMPQ     CX, $8
	JB       nfrest
	VPAND    (SI), Y0, Y2
	VPCMPEQD Y0, Y2, Y2
	VPOR     Y2, Y1, Y1
	ADDQ     $32, SI
	SUBQ     $8, CX
	JMP      nf8

nfrest:
	VPTEST     Y1, Y1
	VZEROUPPER
	JNZ        nfyes
	TESTQ      CX, CX
	JZ         nfno

nf1:
	MOVL (SI), DX
	ANDL $0x7f800000, DX
	CMPL DX, $0x7f800000
	JEQ  nfyes
	ADDQ $4, SI
	DECQ CX
	JNZ  nf1

nfno:
	MOVB $0, ret+24(FP)
	RET

nfyes:
	MOVB $1, ret+24(FP)
	RET

// func sgdAVX2(p, g []float32, lr float32)
// p[i] -= lr*g[i] for i < len(g).
TEXT ·sgdAVX2(SB), NOSPLIT, $0-52
	MOVQ         p_base+0(FP), DI
	MOVQ         g_base+24(FP), SI
	MOVQ         g_len+32(FP), CX
	VBROADCASTSS lr+48(FP), Y0
	CMPQ         CX, $32
	JB           sgd8

sgd32:
	VMULPS  (SI), Y0, Y1
	VMULPS  32(SI), Y0, Y2
	VMULPS  64(SI), Y0, Y3
	VMULPS  96(SI), Y0, Y4
	VMOVUPS (DI), Y5
	VMOVUPS 32(DI), Y6
	VMOVUPS 64(DI), Y7
	VMOVUPS 96(DI), Y8
	VSUBPS  Y1, Y5, Y5
	VSUBPS  Y2, Y6, Y6
	VSUBPS  Y3, Y7, Y7
	VSUBPS  Y4, Y8, Y8
	VMOVUPS Y5, (DI)
	VMOVUPS Y6, 32(DI)
	VMOVUPS Y7, 64(DI)
	VMOVUPS Y8, 96(DI)
	ADDQ    $128, SI
	ADDQ    $128, DI
	SUBQ    $32, CX
	CMPQ    CX, $32
	JAE     sgd32

sgd8:
	CMPQ    CX, $8
	JB      sgdrest
	VMULPS  (SI), Y0, Y1
	VMOVUPS (DI), Y5
	VSUBPS  Y1, Y5, Y5
	VMOVUPS Y5, (DI)
	ADDQ    $32, SI
	ADDQ    $32, DI
	SUBQ    $8, CX
	JMP     sgd8

sgdrest:
	TESTQ CX, CX
	JZ    sgddone

sgd1:
	VMOVSS (SI), X1
	VMULSS X1, X0, X1
	VMOVSS (DI), X5
	VSUBSS X1, X5, X5
	VMOVSS X5, (DI)
	ADDQ   $4, SI
	ADDQ   $4, DI
	DECQ   CX
	JNZ    sgd1

sgddone:
	VZEROUPPER
	RET

// func addAVX2(acc, g []float32)
// acc[i] += g[i] for i < len(g).
TEXT ·addAVX2(SB), NOSPLIT, $0-48
	MOVQ acc_base+0(FP), DI
	MOVQ g_base+24(FP), SI
	MOVQ g_len+32(FP), CX
	CMPQ CX, $32
	JB   add8

add32:
	VMOVUPS (DI), Y1
	VMOVUPS 32(DI), Y2
	VMOVUPS 64(DI), Y3
	VMOVUPS 96(DI), Y4
	VADDPS  (SI), Y1, Y1
	VADDPS  32(SI), Y2, Y2
	VADDPS  64(SI), Y3, Y3
	VADDPS  96(SI), Y4, Y4
	VMOVUPS Y1, (DI)
	VMOVUPS Y2, 32(DI)
	VMOVUPS Y3, 64(DI)
	VMOVUPS Y4, 96(DI)
	ADDQ    $128, SI
	ADDQ    $128, DI
	SUBQ    $32, CX
	CMPQ    CX, $32
	JAE     add32

add8:
	CMPQ    CX, $8
	JB      addrest
	VMOVUPS (DI), Y1
	VADDPS  (SI), Y1, Y1
	VMOVUPS Y1, (DI)
	ADDQ    $32, SI
	ADDQ    $32, DI
	SUBQ    $8, CX
	JMP     add8

addrest:
	TESTQ CX, CX
	JZ    adddone

add1:
	VMOVSS (DI), X1
	VADDSS (SI), X1, X1
	VMOVSS X1, (DI)
	ADDQ   $4, SI
	ADDQ   $4, DI
	DECQ   CX
	JNZ    add1

adddone:
	VZEROUPPER
	RET

// func addDivAVX2(acc, g []float32, n float32)
// acc[i] = (acc[i] + g[i]) / n for i < len(g).
TEXT ·addDivAVX2(SB), NOSPLIT, $0-52
	MOVQ         acc_base+0(FP), DI
	MOVQ         g_base+24(FP), SI
	MOVQ         g_len+32(FP), CX
	VBROADCASTSS n+48(FP), Y0
	CMPQ         CX, $32
	JB           ad8

ad32:
	VMOVUPS (DI), Y1
	VMOVUPS 32(DI), Y2
	VMOVUPS 64(DI), Y3
	VMOVUPS 96(DI), Y4
	VADDPS  (SI), Y1, Y1
	VADDPS  32(SI), Y2, Y2
	VADDPS  64(SI), Y3, Y3
	VADDPS  96(SI), Y4, Y4
	VDIVPS  Y0, Y1, Y1
	VDIVPS  Y0, Y2, Y2
	VDIVPS  Y0, Y3, Y3
	VDIVPS  Y0, Y4, Y4
	VMOVUPS Y1, (DI)
	VMOVUPS Y2, 32(DI)
	VMOVUPS Y3, 64(DI)
	VMOVUPS Y4, 96(DI)
	ADDQ    $128, SI
	ADDQ    $128, DI
	SUBQ    $32, CX
	CMPQ    CX, $32
	JAE     ad32

ad8:
	CMPQ    CX, $8
	JB      adrest
	VMOVUPS (DI), Y1
	VADDPS  (SI), Y1, Y1
	VDIVPS  Y0, Y1, Y1
	VMOVUPS Y1, (DI)
	ADDQ    $32, SI
	ADDQ    $32, DI
	SUBQ    $8, CX
	JMP     ad8

adrest:
	TESTQ CX, CX
	JZ    addone

ad1:
	VMOVSS (DI), X1
	VADDSS (SI), X1, X1
	VDIVSS X0, X1, X1
	VMOVSS X1, (DI)
	ADDQ   $4, SI
	ADDQ   $4, DI
	DECQ   CX
	JNZ    ad1

addone:
	VZEROUPPER
	RET

// func divAVX2(acc []float32, n float32)
// acc[i] /= n.
TEXT ·divAVX2(SB), NOSPLIT, $0-28
	MOVQ         acc_base+0(FP), DI
	MOVQ         acc_len+8(FP), CX
	VBROADCASTSS n+24(FP), Y0
	CMPQ         CX, $8
	JB           divrest

div8:
	VMOVUPS (DI), Y1
	VDIVPS  Y0, Y1, Y1
	VMOVUPS Y1, (DI)
	ADDQ    $32, DI
	SUBQ    $8, CX
	CMPQ    CX, $8
	JAE     div8

divrest:
	TESTQ CX, CX
	JZ    divdone

div1:
	VMOVSS (DI), X1
	VDIVSS X0, X1, X1
	VMOVSS X1, (DI)
	ADDQ   $4, DI
	DECQ   CX
	JNZ    div1

divdone:
	VZEROUPPER
	RET
