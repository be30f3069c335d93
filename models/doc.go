// Package models builds the classifiers the trainer runs, as graphs of
// package runtime: logistic regression (logreg, 784→10), a multi-layer
// perceptron (mlp, 784-256-128-10 with ReLU) and a LeNet-style
// convolutional network (cnn).
//
//	m, err := models.Build("mlp", models.Config{Seed: 1})
//	// feed m.Input ([n, 784] float32) and m.Labels ([n] int32);
//	// run m.Train as a target to take a step, fetch m.Loss or m.Accuracy.
//
// Every model's loss is the MEAN softmax cross entropy over the batch, so
// the mean of W workers' gradients on batches of B equals the gradient on
// their combined batch of W·B: synchronous data-parallel training follows
// single-worker training at the larger batch.
//
// Variables are named "<layer>/kernel" and "<layer>/bias" (dense kernels
// [in, out], convolution filters [kh, kw, cin, cout]) and initialised by
// Config.Init: InitGlorot (Glorot-uniform weights, zero biases) or
// InitTorch (weights and biases from U(-1/√fan_in, 1/√fan_in), PyTorch's
// default, to compare with PyTorch references). Initial values depend only
// on Config.Seed and the variable's name.
//
// The cnn is conv5×5×16-relu-maxpool2-conv5×5×32-relu-maxpool2-fc128-relu-
// fc10 (SAME padding) by default: half the filters of the classic LeNet
// (32, 64, fc 1024) and an eighth of its dense layer, which keeps a step
// affordable on two cores; Config.ConvFilters and ConvDense restore the
// classic sizes.
package models
