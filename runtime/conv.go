package runtime

import (
	"math"

	"github.com/flowps/flowps/runtime/blas"
	gonumblas "gonum.org/v1/gonum/blas/gonum"
)

// convGeom is the geometry of a Conv2D or MaxPool on NHWC data.
type convGeom struct {
	n, h, w, c     int
	kh, kw         int
	sh, sw         int
	oh, ow         int
	padTop, padLft int
}

func newGeom(x Shape, kh, kw int, st [2]int, same bool) (convGeom, error) {
	if x.Rank() != 4 {
		return convGeom{}, errorf(ErrShape, "input %v is not NHWC", x)
	}
	g := convGeom{n: x[0], h: x[1], w: x[2], c: x[3], kh: kh, kw: kw, sh: st[0], sw: st[1]}
	g.oh, g.ow = convOut(g.h, kh, g.sh, same), convOut(g.w, kw, g.sw, same)
	if same {
		g.padTop = max((g.oh-1)*g.sh+kh-g.h, 0) / 2
		g.padLft = max((g.ow-1)*g.sw+kw-g.w, 0) / 2
	}
	return g, nil
}

// span returns, for output column ox, the window's valid input columns
// [ix0, ix1) and the offset of ix0 within the window.
func (g *convGeom) span(ox int) (ix0, ix1, k0 int) {
	start := ox*g.sw - g.padLft
	ix0, ix1 = max(start, 0), min(start+g.kw, g.w)
	return ix0, ix1, ix0 - start
}

// im2col writes, for images [b0, b0+nb), one row per output pixel holding
// the kh×kw×c input patch (zeros outside the image). In NHWC one window
// row (fixed ky) is kw×c contiguous input values, so each is one copy.
func (g *convGeom) im2col(x []float32, b0, nb int, cols []float32) {
	K := g.kh * g.kw * g.c
	rowLen := g.kw * g.c
	r := 0
	for b := b0; b < b0+nb; b++ {
		img := x[b*g.h*g.w*g.c : (b+1)*g.h*g.w*g.c]
		for oy := 0; oy < g.oh; oy++ {
			for ox := 0; ox < g.ow; ox++ {
				row := cols[r*K : (r+1)*K]
				r++
				ix0, ix1, k0 := g.span(ox)
				for ky := 0; ky < g.kh; ky++ {
					dst := row[ky*rowLen : (ky+1)*rowLen]
					iy := oy*g.sh - g.padTop + ky
					if iy < 0 || iy >= g.h || ix0 >= ix1 {
						clear(dst)
						continue
					}
					src := img[(iy*g.w+ix0)*g.c : (iy*g.w+ix1)*g.c]
					lo := k0 * g.c
					if rowLen <= 16 {
						// Few channels (the first layer): calls to
						// memmove and memclr would cost more than the
						// handful of values they move.
						for i := range lo {
							dst[i] = 0
						}
						d := dst[lo : lo+len(src)]
						for i, v := range src {
							d[i] = v
						}
						for i := lo + len(src); i < rowLen; i++ {
							dst[i] = 0
						}
						continue
					}
					clear(dst[:lo])
					n := copy(dst[lo:], src)
					clear(dst[lo+n:])
				}
			}
		}
	}
}

// col2im adds patch rows back into dx (the adjoint of im2col).
func (g *convGeom) col2im(cols []float32, b0, nb int, dx []float32) {
	K := g.kh * g.kw * g.c
	rowLen := g.kw * g.c
	r := 0
	for b := b0; b < b0+nb; b++ {
		img := dx[b*g.h*g.w*g.c : (b+1)*g.h*g.w*g.c]
		for oy := 0; oy < g.oh; oy++ {
			for ox := 0; ox < g.ow; ox++ {
				row := cols[r*K : (r+1)*K]
				r++
				ix0, ix1, k0 := g.span(ox)
				if ix0 >= ix1 {
					continue
				}
				for ky := 0; ky < g.kh; ky++ {
					iy := oy*g.sh - g.padTop + ky
					if iy < 0 || iy >= g.h {
						continue
					}
					src := row[ky*rowLen+k0*g.c : ky*rowLen+(k0+ix1-ix0)*g.c]
					d := img[(iy*g.w+ix0)*g.c : (iy*g.w+ix1)*g.c]
					for i, v := range src {
						d[i] += v
					}
				}
			}
		}
	}
}

// chunk is how many images one im2col buffer holds (about 2 MiB, so it
// stays in cache between im2col and the product: measured on this
// machine, conv2 of the CNN benchmark runs at ~95-105 GFLOPS in chunks
// of 2-6 images and 60-85 GFLOPS as one product over a batch of 32).
func (g *convGeom) chunk() int {
	per := g.oh * g.ow * g.kh * g.kw * g.c
	return max(1, min(g.n, (1<<19)/max(per, 1)))
}

func convArgs(n *pnode, x, f *Tensor) (convGeom, int, error) {
	if err := wantF(x, "input"); err != nil {
		return convGeom{}, 0, err
	}
	if err := wantF(f, "filter"); err != nil {
		return convGeom{}, 0, err
	}
	if x.Shape.Rank() != 4 || f.Shape.Rank() != 4 || x.Shape[3] != f.Shape[2] {
		return convGeom{}, 0, errorf(ErrShape, "input %v does not fit filter %v", x.Shape, f.Shape)
	}
	g, err := newGeom(x.Shape, f.Shape[0], f.Shape[1], n.a.strides, n.a.same)
	return g, f.Shape[3], err
}

func kConv2D(k *kctx, n *pnode, in []*Tensor, out *Tensor) error {
	x, f := in[0], in[1]
	g, co, err := convArgs(n, x, f)
	if err != nil {
		return err
	}
	o := k.alloc(out, g.n, g.oh, g.ow, co)
	K := g.kh * g.kw * g.c
	ch := g.chunk()
	cols := k.scratch(ch * g.oh * g.ow * K)
	defer k.free(cols)
	beta := float32(0)
	var bias []float32
	if n.a.bias {
		if bias = in[2].F; len(bias) != co || in[2].DType != Float32 {
			return errorf(ErrShape, "bias %v for %d output channels", in[2].Shape, co)
		}
		beta = 1
	}
	for b0 := 0; b0 < g.n; b0 += ch {
		nb := min(ch, g.n-b0)
		m := nb * g.oh * g.ow
		g.im2col(x.F, b0, nb, cols)
		dst := o[b0*g.oh*g.ow*co : (b0+nb)*g.oh*g.ow*co]
		if bias != nil {
			for r := 0; r < m; r++ {
				copy(dst[r*co:(r+1)*co], bias)
			}
		}
		blas.Sgemm(false, false, m, co, K, 1, cols, K, f.F, co, beta, dst, co)
		if n.a.relu {
			relu(dst)
		}
	}
	return nil
}

// kConvInputGrad: in = dy, x, filter.
func kConvInputGrad(k *kctx, n *pnode, in []*Tensor, out *Tensor) error {
	dy, x, f := in[0], in[1], in[2]
	g, co, err := convArgs(n, x, f)
	if err != nil {
		return err
	}
	if !dy.Shape.Equal(Shape{g.n, g.oh, g.ow, co}) {
		return errorf(ErrShape, "gradient %v for output [%d,%d,%d,%d]", dy.Shape, g.n, g.oh, g.ow, co)
	}
	dx := k.alloc(out, x.Shape...)
	clear(dx)
	K := g.kh * g.kw * g.c
	ch := g.chunk()
	cols := k.scratch(ch * g.oh * g.ow * K)
	defer k.free(cols)
	for b0 := 0; b0 < g.n; b0 += ch {
		nb := min(ch, g.n-b0)
		m := nb * g.oh * g.ow
		blas.Sgemm(false, true, m, K, co, 1, dy.F[b0*g.oh*g.ow*co:], co, f.F, co, 0, cols, K)
		g.col2im(cols, b0, nb, dx)
	}
	return nil
}

// kConvFilterGrad: in = dy, x, filter.
func kConvFilterGrad(k *kctx, n *pnode, in []*Tensor, out *Tensor) error {
	dy, x, f := in[0], in[1], in[2]
	g, co, err := convArgs(n, x, f)
	if err != nil {
		return err
	}
	if !dy.Shape.Equal(Shape{g.n, g.oh, g.ow, co}) {
		return errorf(ErrShape, "gradient %v for output [%d,%d,%d,%d]", dy.Shape, g.n, g.oh, g.ow, co)
	}
	df := k.alloc(out, f.Shape...)
	if g.n == 0 || g.oh*g.ow == 0 {
		clear(df)
		return nil
	}
	K := g.kh * g.kw * g.c
	ch := g.chunk()
	cols := k.scratch(ch * g.oh * g.ow * K)
	defer k.free(cols)
	beta := float32(0) // the first chunk overwrites df, the others add
	for b0 := 0; b0 < g.n; b0 += ch {
		nb := min(ch, g.n-b0)
		m := nb * g.oh * g.ow
		g.im2col(x.F, b0, nb, cols)
		blas.Sgemm(true, false, K, co, m, 1, cols, K, dy.F[b0*g.oh*g.ow*co:], co, beta, df, co)
		beta = 1
	}
	return nil
}

// kMaxPool computes MaxPool (in = x) or MaxPoolGrad (in = dy, x, y): the
// gradient goes to the first maximal element of each window. Loops run
// over the channels innermost, where NHWC data is contiguous. A
// MaxPoolGrad with attrs.relu (the plan's fusion of ReluGrad into it, x
// being the Relu's output) passes the gradient only where x > 0.
//
// When the plan also computes the pool's gradient, the forward kernel
// records each output's argmax (an input index) in the run state, and
// MaxPoolGrad then only scatters dy through it; otherwise (the argmax of
// another run, or none) the gradient searches the windows again.
func kMaxPool(k *kctx, n *pnode, in []*Tensor, out *Tensor) error {
	var dy *Tensor
	yNode := -1
	if n.op == opMaxPoolGrad {
		dy, in = in[0], in[1:]
		if len(n.in) == 3 {
			yNode = n.in[2]
		}
	}
	x := in[0]
	if err := wantF(x, "input"); err != nil {
		return err
	}
	g, err := newGeom(x.Shape, n.a.ksize[0], n.a.ksize[1], n.a.strides, n.a.same)
	if err != nil {
		return err
	}
	C := g.c
	if dy == nil {
		o := k.alloc(out, g.n, g.oh, g.ow, C)
		if C == 0 {
			return nil
		}
		g.maxPool(x.F, o, k.argmaxFor(len(o)))
		return nil
	}
	if !dy.Shape.Equal(Shape{g.n, g.oh, g.ow, C}) {
		return errorf(ErrShape, "gradient %v for output [%d,%d,%d,%d]", dy.Shape, g.n, g.oh, g.ow, C)
	}
	dx := k.alloc(out, x.Shape...)
	clear(dx)
	if C == 0 {
		return nil
	}
	arg := k.cachedArgmax(yNode, len(dy.F))
	if arg == nil {
		arg = make([]int32, len(dy.F))
		g.maxPool(x.F, make([]float32, len(dy.F)), arg)
	}
	if !n.a.relu {
		for j, a := range arg {
			if a >= 0 {
				dx[a] += dy.F[j]
			}
		}
		return nil
	}
	// Fused ReluGrad: x is the Relu's output; the gradient passes where
	// it is positive.
	for j, a := range arg {
		if a >= 0 && x.F[a] > 0 {
			dx[a] += dy.F[j]
		}
	}
	return nil
}

// maxPool writes the window maxima of x into o and, when arg is not nil,
// the index in x of each (the first maximal element; -1 for a window that
// lies wholly in the padding, whose output is 0).
func (g *convGeom) maxPool(x, o []float32, arg []int32) {
	C := g.c
	var offs [64]int
	for b := 0; b < g.n; b++ {
		base := b * g.h * g.w * C
		for oy := 0; oy < g.oh; oy++ {
			for ox := 0; ox < g.ow; ox++ {
				ws := g.window(oy, ox, offs[:0])
				oi := ((b*g.oh+oy)*g.ow + ox) * C
				dst := o[oi : oi+C]
				if len(ws) == 0 {
					clear(dst)
					if arg != nil {
						for c := range C {
							arg[oi+c] = -1
						}
					}
					continue
				}
				p0 := base + ws[0]
				copy(dst, x[p0:p0+C])
				if arg == nil {
					for _, p := range ws[1:] {
						src := x[base+p : base+p+C]
						for c, v := range src {
							mb, vb := math.Float32bits(dst[c]), math.Float32bits(v)
							if orderKey(vb) > orderKey(mb) {
								mb = vb
							}
							dst[c] = math.Float32frombits(mb)
						}
					}
					continue
				}
				am := arg[oi : oi+C]
				for c := range am {
					am[c] = int32(p0 + c)
				}
				for _, p := range ws[1:] {
					q := base + p
					src := x[q : q+C]
					src = src[:len(dst)]
					am = am[:len(dst)]
					for c, v := range src {
						// Branch-free: compared as ordered integers,
						// the selects compile to conditional moves; a
						// float compare would branch, and with random
						// data mispredict often.
						mb, vb, a := math.Float32bits(dst[c]), math.Float32bits(v), am[c]
						if orderKey(vb) > orderKey(mb) {
							mb, a = vb, int32(q+c)
						}
						dst[c], am[c] = math.Float32frombits(mb), a
					}
				}
			}
		}
	}
}

// orderKey maps float32 bits to an int32 that orders as the floats do
// (-0 just below +0), with every NaN above +Inf, so that a NaN in a window
// wins it and propagates. It compiles to integer operations and
// conditional moves.
func orderKey(b uint32) int32 {
	i := int32(b)
	k := i ^ (i >> 31 & 0x7fffffff)
	if b&0x7fffffff > 0x7f800000 {
		k = math.MaxInt32
	}
	return k
}

// window appends to offs the offsets, within one image, of the valid
// input pixels of output (oy, ox)'s window, row by row. Windows larger
// than offs's capacity grow it.
func (g *convGeom) window(oy, ox int, offs []int) []int {
	for ky := 0; ky < g.kh; ky++ {
		iy := oy*g.sh - g.padTop + ky
		if iy < 0 || iy >= g.h {
			continue
		}
		for kx := 0; kx < g.kw; kx++ {
			ix := ox*g.sw - g.padLft + kx
			if ix >= 0 && ix < g.w {
				offs = append(offs, (iy*g.w+ix)*g.c)
			}
		}
	}
	return offs
}

// axpy computes y += a*x (gonum's assembly kernel).
func axpy(a float32, x, y []float32) {
	if len(x) > 0 {
		gonumblas.Implementation{}.Saxpy(len(x), a, x, 1, y[:len(x)], 1)
	}
}
