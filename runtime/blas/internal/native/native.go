// Package native is flowps's float32 GEMM for amd64 with AVX2 and FMA: a
// 6×16 micro-kernel in Go assembly (kernel_amd64.s) and Go-side packing
// and cache blocking. It is a package of its own because Go assembly
// cannot share a package with cgo (runtime/blas links OpenBLAS). Use it
// through runtime/blas, which checks the arguments.
package native

import "sync"

// The native GEMM: Goto/BLIS-style blocking around the 6×16 micro-kernel.
//
//	for jc over n by nc:          B block kc×nc, packed, lives in L2/L3
//	  for pc over k by kc:
//	    pack op(B)[pc:pc+kc, jc:jc+nc] into nr-wide panels
//	    for ic over m by mc:      A block mc×kc, packed, lives in L2
//	      pack op(A)[ic:ic+mc, pc:pc+kc] into mr-high panels
//	      for jr over nc by nr:   one B micro-panel (kc×16 = 16 KiB) stays in L1
//	        for ir over mc by mr: kernel6x16 streams one A micro-panel from L2
//
// kcMax = 256 keeps a B micro-panel at half of a 32 KiB L1d; mcMax = 144
// keeps the A block at 144 KiB, well inside a 512 KiB L2 beside the B
// panels streaming through it; ncMax bounds the packed B block (4 MiB).
// Block sizes are balanced (k = 784 runs as 4×196, not 3×256+16) so no
// block is a sliver. Packing pads partial panels with zeros; tiles that
// stick out of C are computed into a 6×16 scratch tile and merged.
//
// Two departures from the textbook loop, both measured: an untransposed B
// is packed row by row (one sequential sweep over each row of b feeds all
// panels; per panel it was a column strip of lines ldb apart, which cost
// 21 -> 25 GFLOPS at 32×512×3136), and a transposed A is read in place
// when there is a single B panel (n ≤ 16), since its micro-panels are
// then used once and packing them only adds a copy (128×10×128: 14 -> 17
// GFLOPS). In place is not used for more panels: with lda a multiple of
// 1024 the strided rows alias in L1 (1024³ transA fell from 33 to 21).
const (
	mr    = 6
	nr    = 16
	kcMax = 256
	mcMax = 144
	ncMax = 4096
)

// workspace holds the pack buffers of one call. They come from a pool, so
// concurrent calls each get their own and the hot path does not allocate.
type workspace struct {
	a, b []float32
	t    [mr * nr]float32
}

var wsPool = sync.Pool{New: func() any { return new(workspace) }}

func roundUp(x, to int) int { return (x + to - 1) / to * to }

// split divides n into ceil(n/max) near-equal blocks and returns the block
// size rounded up to a multiple of unit.
func split(n, max, unit int) int {
	nb := (n + max - 1) / max
	return roundUp((n+nb-1)/nb, unit)
}

// Sgemm computes C = alpha·op(A)·op(B) + beta·C on row-major matrices
// (op transposes when the flag is set; op(A) is m×k, op(B) k×n), as
// runtime/blas.Sgemm documents; beta == 0 does not read C. The caller must
// have checked the dimensions and slice lengths and that OK is true: the
// kernel reads and writes through raw pointers. Safe for concurrent use.
func Sgemm(tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	if alpha == 0 || k == 0 {
		scaleC(m, n, beta, c, ldc)
		return
	}
	kc := split(k, kcMax, 1)
	mc := split(m, mcMax, mr)
	nc := split(n, ncMax, nr)
	ws := wsPool.Get().(*workspace)
	if need := mc * kc; len(ws.a) < need {
		ws.a = make([]float32, need)
	}
	if need := nc * kc; len(ws.b) < need {
		ws.b = make([]float32, need)
	}
	for jc := 0; jc < n; jc += nc {
		ncur := min(nc, n-jc)
		for pc := 0; pc < k; pc += kc {
			kcur := min(kc, k-pc)
			packB(tB, b, ldb, pc, kcur, jc, ncur, ws.b)
			bet := beta
			if pc > 0 {
				bet = 1
			}
			for ic := 0; ic < m; ic += mc {
				mcur := min(mc, m-ic)
				var ad []float32
				if tA && ncur <= nr {
					// One B panel: each A micro-panel is used once, so
					// packing it would only add a copy. op(A) is a's
					// columns, and row p of a holds the 6 floats of a
					// micro-panel's step p, so the kernel reads them in
					// place; only a short last panel is packed.
					ad = a[pc*lda+ic:]
					if full := mcur / mr * mr; full < mcur {
						packA(tA, a, lda, ic+full, mcur-full, pc, kcur, ws.a)
					}
				} else {
					packA(tA, a, lda, ic, mcur, pc, kcur, ws.a)
				}
				macroKernel(ws, ad, lda, mcur, ncur, kcur, alpha, bet, c[ic*ldc+jc:], ldc)
			}
		}
	}
	wsPool.Put(ws)
}

// macroKernel multiplies the A block (mc×kc: packed in ws.a, or, when ad
// is not nil, read in place from ad with row stride lda) and the packed
// B block ws.b (kc×nc) into C (starting at its top-left element) as
// alpha·A·B + beta·C.
func macroKernel(ws *workspace, ad []float32, lda, mc, nc, kc int, alpha, beta float32, c []float32, ldc int) {
	for jr := 0; jr < nc; jr += nr {
		nrc := min(nr, nc-jr)
		bp := &ws.b[jr*kc]
		for ir := 0; ir < mc; ir += mr {
			mrc := min(mr, mc-ir)
			var ap *float32
			as := mr
			switch {
			case ad == nil:
				ap = &ws.a[ir*kc]
			case mrc == mr:
				ap, as = &ad[ir], lda
			default:
				ap = &ws.a[0] // the short last panel, packed
			}
			if mrc == mr && nrc == nr {
				kernel6x16(kc, ap, as, bp, &c[ir*ldc+jr], ldc, alpha, beta)
				continue
			}
			kernel6x16(kc, ap, as, bp, &ws.t[0], nr, alpha, 0)
			for i := 0; i < mrc; i++ {
				row := c[(ir+i)*ldc+jr:][:nrc]
				t := ws.t[i*nr:][:nrc]
				if beta == 0 {
					copy(row, t)
					continue
				}
				for j, v := range t {
					row[j] = v + beta*row[j]
				}
			}
		}
	}
}

// packA packs op(A)[i0:i0+mc, p0:p0+kc] into mr-high panels, each kc×mr
// with the mr elements of one k adjacent; a short last panel is padded
// with zeros.
func packA(tA bool, a []float32, lda, i0, mc, p0, kc int, dst []float32) {
	for ir := 0; ir < mc; ir += mr {
		d := dst[ir*kc : ir*kc+mr*kc]
		rows := min(mr, mc-ir)
		i := i0 + ir
		if tA {
			// op(A)[i][p] = a[p*lda+i]: mr contiguous floats per k.
			if rows == mr {
				copy6(kc, &a[p0*lda+i], lda, &d[0])
				continue
			}
			for p := 0; p < kc; p++ {
				q := d[p*mr : p*mr+mr]
				copy(q, a[(p0+p)*lda+i:(p0+p)*lda+i+rows])
				clear(q[rows:])
			}
			continue
		}
		// op(A)[i][p] = a[i*lda+p]: interleave mr rows.
		if rows == mr {
			interleave4(kc, &a[i*lda+p0], lda, &d[0], mr)
			interleave2(kc, &a[(i+4)*lda+p0], lda, &d[4], mr)
			continue
		}
		clear(d)
		for r := 0; r < rows; r++ {
			for p, v := range a[(i+r)*lda+p0:][:kc] {
				d[p*mr+r] = v
			}
		}
	}
}

// packB packs op(B)[p0:p0+kc, j0:j0+nc] into nr-wide panels, each kc×nr
// with the nr elements of one k adjacent; a narrow last panel is padded
// with zeros.
func packB(tB bool, b []float32, ldb, p0, kc, j0, nc int, dst []float32) {
	if !tB && nc >= nr {
		// Full panels row by row: each row of b is read in one sweep.
		np := nc / nr
		copyRows16(kc, &b[p0*ldb+j0], ldb, &dst[0], np, nr*kc)
		if np*nr == nc {
			return
		}
		packB(tB, b, ldb, p0, kc, j0+np*nr, nc-np*nr, dst[np*nr*kc:])
		return
	}
	for jr := 0; jr < nc; jr += nr {
		d := dst[jr*kc : jr*kc+nr*kc]
		cols := min(nr, nc-jr)
		j := j0 + jr
		if !tB {
			// op(B)[p][j] = b[p*ldb+j]; full panels went to copyRows16.
			for p := 0; p < kc; p++ {
				q := d[p*nr : p*nr+nr]
				copy(q, b[(p0+p)*ldb+j:(p0+p)*ldb+j+cols])
				clear(q[cols:])
			}
			continue
		}
		// op(B)[p][j] = b[j*ldb+p]: interleave nr rows of b.
		if cols == nr {
			for g := 0; g < nr; g += 4 {
				interleave4(kc, &b[(j+g)*ldb+p0], ldb, &d[g], nr)
			}
			continue
		}
		clear(d)
		for cc := 0; cc < cols; cc++ {
			for p, v := range b[(j+cc)*ldb+p0:][:kc] {
				d[p*nr+cc] = v
			}
		}
	}
}

// scaleC sets C = beta·C; beta == 0 clears C without reading it.
func scaleC(m, n int, beta float32, c []float32, ldc int) {
	for i := 0; i < m; i++ {
		row := c[i*ldc:][:n]
		switch beta {
		case 0:
			clear(row)
		case 1:
		default:
			for j := range row {
				row[j] *= beta
			}
		}
	}
}
