package runtime

import "fmt"

// Node is one operation of a graph and names its output. Nodes are created
// by Builder methods and never change afterwards, so one graph can be run by
// many sessions and goroutines at once.
type Node struct {
	id     int
	op     string
	name   string
	inputs []*Node
	shape  Shape
	dtype  DType
	a      attrs
	owner  *Builder
}

// ID is the node's index in its graph.
func (n *Node) ID() int { return n.id }

// Op is the operation's type, such as "MatMul".
func (n *Node) Op() string { return n.op }

// Name is the node's name: the given name for placeholders and variables,
// "Op_ID" for the others unless set with Builder.Name.
func (n *Node) Name() string { return n.name }

// Shape is the output's build-time shape (-1 for unknown dimensions). Do
// not modify it.
func (n *Node) Shape() Shape { return n.shape }

// DType is the output's element type.
func (n *Node) DType() DType { return n.dtype }

// NumInputs is the number of inputs.
func (n *Node) NumInputs() int { return len(n.inputs) }

// Input returns the i-th input.
func (n *Node) Input(i int) *Node { return n.inputs[i] }

// String renders "name(Op)[shape]".
func (n *Node) String() string {
	if n == nil {
		return "<nil node>"
	}
	return fmt.Sprintf("%s(%s)%v", n.name, n.op, n.shape)
}

// attrs are the static attributes of a node. Every field takes part in the
// key used to merge common subexpressions.
type attrs struct {
	transA, transB bool
	axes           []int
	keepDims       bool
	mean           bool
	shape          Shape
	perm           []int
	axis           int
	index          int
	strides        [2]int
	ksize          [2]int
	same           bool
	rate           float32
	seed           int64
	dtype          DType
	relu           bool
	bias           bool
	value          *Tensor
	varDef         *VariableDef
}

// Builder builds a graph. Its methods return the new node and record the
// first error (a shape or dtype mismatch, a bad attribute, a nil input);
// once an error is recorded, every later method returns an inert node, and
// Err and Build report the error. That keeps model code a straight list of
// layers with one error check at the end:
//
//	b := runtime.NewBuilder()
//	x := b.Placeholder("x", runtime.Float32, runtime.Shape{-1, 784})
//	w := b.Variable("w", runtime.Shape{784, 10}, runtime.GlorotUniform(1))
//	logits := b.MatMul(x, w, false, false)
//	g, err := b.Build()
//
// A Builder is not safe for concurrent use; the Graph it builds is.
type Builder struct {
	nodes []*Node
	err   error
	vars  map[string]*Node
	phs   map[string]*Node
	built int // nodes [0, built) belong to a built graph
}

// NewBuilder returns an empty builder.
func NewBuilder() *Builder {
	return &Builder{vars: map[string]*Node{}, phs: map[string]*Node{}}
}

// Err returns the first error recorded, or nil.
func (b *Builder) Err() error { return b.err }

// Build returns the graph of every node added so far, or the first error
// recorded. The builder may keep adding nodes (for example for another
// graph that shares the first one's nodes); a graph never sees nodes added
// after its Build.
func (b *Builder) Build() (*Graph, error) {
	if b.err != nil {
		return nil, b.err
	}
	g := &Graph{b: b, nodes: b.nodes[:len(b.nodes):len(b.nodes)]}
	b.built = len(b.nodes)
	for _, n := range g.nodes {
		if n.op == opVariable {
			g.vars = append(g.vars, n)
		}
	}
	return g, nil
}

// Name renames n and returns it. Names need not be unique but unique names
// make errors and stats easier to read. Placeholders and variables keep
// the name they were declared with, and nodes of a built graph cannot be
// renamed (graphs are immutable): both record ErrInvalidArgument.
func (b *Builder) Name(n *Node, name string) *Node {
	if !b.check("Name", n) {
		return n
	}
	switch {
	case name == "":
		b.fail(errorf(ErrInvalidArgument, "Name: empty name for %v", n))
	case n.op == opPlaceholder || n.op == opVariable:
		b.fail(errorf(ErrInvalidArgument, "Name: cannot rename %v to %q", n, name))
	case n.id < b.built:
		b.fail(errorf(ErrInvalidArgument, "Name: %v belongs to a built graph", n))
	default:
		n.name = name
	}
	return n
}

var inert = &Node{id: -1, op: "Invalid", name: "invalid", dtype: Float32}

func (b *Builder) fail(err error) *Node {
	if b.err == nil {
		b.err = err
	}
	return inert
}

// check verifies that the inputs exist and belong to b; it records and
// returns false on failure.
func (b *Builder) check(op string, in ...*Node) bool {
	if b.err != nil {
		return false
	}
	for i, n := range in {
		if n == nil {
			b.fail(errorf(ErrInvalidArgument, "%s: input %d is nil", op, i))
			return false
		}
		if n.owner != b {
			b.fail(errorf(ErrForeignNode, "%s: input %d %v belongs to another builder", op, i, n))
			return false
		}
	}
	return true
}

func (b *Builder) add(op string, in []*Node, shape Shape, dtype DType, a attrs) *Node {
	n := &Node{id: len(b.nodes), op: op, inputs: in, shape: shape, dtype: dtype, a: a, owner: b}
	n.name = fmt.Sprintf("%s_%d", op, n.id)
	b.nodes = append(b.nodes, n)
	return n
}

// Graph is an immutable dataflow graph. Run it with a Session; any number
// of sessions and goroutines may run one graph at once.
type Graph struct {
	b     *Builder
	nodes []*Node
	vars  []*Node
}

// NumNodes is the number of nodes.
func (g *Graph) NumNodes() int { return len(g.nodes) }

// Nodes returns the nodes in creation (topological) order. Do not modify
// the slice.
func (g *Graph) Nodes() []*Node { return g.nodes }

// Variables returns the definitions of the graph's variables in creation
// order.
func (g *Graph) Variables() []VariableDef {
	out := make([]VariableDef, len(g.vars))
	for i, v := range g.vars {
		out[i] = *v.a.varDef
		out[i].Shape = v.a.varDef.Shape.Clone()
	}
	return out
}

// VariableNodes returns the graph's variable nodes in creation order.
func (g *Graph) VariableNodes() []*Node { return append([]*Node(nil), g.vars...) }

// Lookup returns the placeholder or variable with the given name, or nil.
func (g *Graph) Lookup(name string) *Node {
	for _, n := range g.nodes {
		if (n.op == opPlaceholder || n.op == opVariable) && n.name == name {
			return n
		}
	}
	return nil
}

func (g *Graph) contains(n *Node) bool {
	return n != nil && n.owner == g.b && n.id >= 0 && n.id < len(g.nodes) && g.nodes[n.id] == n
}
