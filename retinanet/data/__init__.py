"""Images in, tensors out: decoding, the reference's resize and normalisation, COCO-format sets, training batches."""
