"""What training writes and reads: agent directories and checkpoints (:mod:`.checkpoint`),
the run directory's progress, TensorBoard and checkpoint schedule (:mod:`.runlog`), learning
curves (:mod:`.plot`), and evaluation over whole episodes (:mod:`.evaluate`)."""
