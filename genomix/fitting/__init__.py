"""Fitting a model: the skeleton every fit runs (`skeleton.fit_task`), the gradient loop (`loop`), classification
(`training`, finished by the k-mer blend and the temperature in `finishing`) and masked-base pretraining
(`pretraining`); the strand test that decides a set's strands, and the data-parallel helpers."""
