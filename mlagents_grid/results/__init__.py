"""Results: what runs reported, read back to stop, rank, show and report them."""
