"""Screenshot processing primitives: pure functions from image bytes to bytes and numbers.

No Ray, no I/O: the actors that call these decide where the bytes come from and go to.
`compress` redacts, downscales and re-encodes a screenshot as WebP and hashes it;
`vision_local` measures blankness, blur, contrast and overlays with numpy alone.
"""
