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
// classic sizes. Measured with `trainer --local --model cnn --optimizer
// momentum --lr 0.01 --batch 64`: test accuracy 0.9800 after one epoch and
// 0.9844 after two (83 examples/s on a heavily shared 2-core machine, so a
// third epoch, expected to pass 0.985, was not run).
//
// With --init torch, SGD lr 0.1 and batch 128 the trainer measured test
// accuracies 0.9185 / 0.9340 / 0.9491 for the mlp after epochs 1/2/3
// (PyTorch reference 0.916 / 0.933 / 0.952) and 0.9003 / 0.9095 / 0.9129 for
// logreg (reference 0.901 / 0.909 / 0.913). Glorot init trains the mlp faster
// (0.9368 / 0.9496 / 0.9606).
package models
