"""The worker side that is not learning: footage in (video), frames out (merge, deliver),
the Blender processes of the guides stage and the runner of a whole shot
(``facegraft run``). Never imports bpy or torch."""
