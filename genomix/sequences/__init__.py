"""Sequences as the models read them: token ids, k-mer codes and one-hot base weights (`tokens`), padded and
length-bucketed batches, crops and windows (`batching`), labelled sets and their splits (`dataset`)."""
