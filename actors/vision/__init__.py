"""Screenshot analysis by a vision-language model (OpenAI or a compatible server).

`VisionService` is the entry point: it paces calls (`RateLimiter`), stops calling a failing
provider (`CircuitBreaker`) and never raises for provider failures, so callers fall back to
the local numpy analysis (actors.media.vision_local) and record that they did.
`OpenAIVision` is the provider itself, with retries we own and can test.
"""

from actors.vision.limits import CircuitBreaker, RateLimiter
from actors.vision.openai_vision import (
    OpenAIVision,
    PageAnalysis,
    VisionCall,
    estimate_image_tokens,
    parse_retry_after,
)
from actors.vision.service import VisionOutcome, VisionService

__all__ = [
    "CircuitBreaker",
    "OpenAIVision",
    "PageAnalysis",
    "RateLimiter",
    "VisionCall",
    "VisionOutcome",
    "VisionService",
    "estimate_image_tokens",
    "parse_retry_after",
]
