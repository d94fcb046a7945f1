"""Session cards: a short title, a two-sentence caption and a contact sheet of key frames,
made when a session is finalised (the "cards" stage, before the archive)."""
