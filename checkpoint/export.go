package checkpoint

import (
	"fmt"
	"io"

	"github.com/flowps/flowps/ps"
)

// ReadVariable assembles variable name's full values (rows of all its
// partitions in order, row-major) from the checkpoint.
func (ck *Checkpoint) ReadVariable(name string) (ps.VariableSpec, []float32, error) {
	var spec ps.VariableSpec
	found := false
	for _, s := range ck.Specs {
		if s.Name == name {
			spec, found = s, true
			break
		}
	}
	if !found {
		return spec, nil, ps.Errorf(ps.ErrUnknownVariable, "checkpoint %s has no variable %s", ck.ID, name)
	}
	out := make([]float32, spec.NumElements())
	rowSize := spec.RowSize()
	for i, r := range spec.Partitions() {
		st, err := ck.ReadPart(ps.PartKey{Var: name, Index: i})
		if err != nil {
			return spec, nil, err
		}
		if int64(len(st.Values)) != r.Len()*rowSize {
			return spec, nil, ps.Errorf(ps.ErrShapeMismatch, "checkpoint %s: %s/%d has %d values, want %d", ck.ID, name, i, len(st.Values), r.Len()*rowSize)
		}
		copy(out[r.Start*rowSize:], st.Values)
	}
	return spec, out, nil
}

// ExportNPZ writes every variable of the checkpoint to w as a .npz
// archive: one float32 array per variable, with the variable's full shape,
// under NPZKey(name). Only values are exported, not optimizer slots.
func (ck *Checkpoint) ExportNPZ(w io.Writer) error {
	z := NewNPZWriter(w)
	for _, s := range ck.Specs {
		spec, vals, err := ck.ReadVariable(s.Name)
		if err != nil {
			return err
		}
		if err := z.Add(spec.Name, spec.Shape, vals); err != nil {
			return fmt.Errorf("export %s: %w", spec.Name, err)
		}
	}
	return z.Close()
}
