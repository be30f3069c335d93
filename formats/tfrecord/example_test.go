package tfrecord_test

import (
	"bytes"
	"fmt"

	"github.com/flowps/flowps/formats/tfrecord"
)

func Example() {
	var buf bytes.Buffer
	w, _ := tfrecord.NewWriter(&buf, tfrecord.WriterOptions{Compression: tfrecord.Gzip})
	w.Write([]byte("hello"))
	w.Write([]byte("world"))
	w.Close()

	r, _ := tfrecord.NewReader(&buf) // the gzip stream is detected
	fmt.Println(r.Compression())
	for rec, err := range r.All() {
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("%s\n", rec)
	}
	// Output:
	// GZIP
	// hello
	// world
}
