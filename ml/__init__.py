"""The learning side of the worker: tracking (MediaPipe), datasets, the swap model,
training, swapping and evaluation. Never imports bpy."""
