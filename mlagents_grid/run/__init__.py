"""Run: workers claim runs from the queue and train each with mlagents-learn."""
