"""The network and what defines it: backbone, FPN neck, head, anchors, box coding, assigner, losses,
checkpoint reading and initialisation."""
