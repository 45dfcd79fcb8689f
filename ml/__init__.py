"""The worker side of FaceGraft: tracking, datasets, training. Never imports bpy."""
