"""What this worker serves: the alias it follows, the model it swaps in, the micro-batcher, deploys."""
