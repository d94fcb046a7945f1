"""Sentiment of what people typed and of reviewers' notes: polarity (-1..1) and confidence,
from the VADER lexicon (offline) or optionally an OpenAI-compatible chat model."""
