// Package checkpoint writes and reads cluster checkpoints of flowps
// variables, and exports them to numpy's .npz format.
//
// A checkpoint is a directory DIR/<id>/ under a checkpoint root that every
// psd of the cluster can reach (one machine, or a shared file system). Its
// id is the UTC time it was requested, so ids sort by age:
//
//	DIR/20261125T183404.123456789Z/
//	    REQUEST.json            what the coordinator asked for: id, nodes expected
//	    <var>.<index>.part      one file per partition (see WritePart)
//	    node-<id>.json          per-node manifest: the parts that node wrote
//	    COMPLETE.json           the mark: every partition of every variable is here
//
// Each psd writes the partitions it is primary for, each file atomically
// (temporary file, fsync, rename, fsync of the directory) with a CRC-32C in
// the file and a SHA-256 in the node's manifest; the node's manifest is
// written last, the same way. The coordinator (Finalize) then checks that
// the manifests of every node it expected cover every partition of every
// variable they list, that every file is there with its size, and that in
// sync mode all partitions of a variable are at one version; only then does
// it write COMPLETE.json. A directory without that mark is ignored by
// Latest and restore, so a crash at any moment leaves either the previous
// complete checkpoint or a new complete one.
//
// Restoring does not depend on the number of psd that wrote the
// checkpoint: partitions are keyed by (variable, index), and the split of a
// variable into partitions depends only on its spec. Each psd of the new
// cluster loads the partitions placement now gives it (Load, then
// Checkpoint.ReadPart and ps.Server.Restore).
//
// ExportNPZ writes one array per variable with its full shape as float32
// ('<f4', C order) in a zip of .npy files that numpy.load opens.
package checkpoint
