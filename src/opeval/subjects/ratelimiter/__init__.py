"""The rate limiter: N limiter nodes sharing sliding-window counters in Redis with Sentinel."""

from opeval.subjects.ratelimiter._subject import CHAOS_KINDS, RateLimiterSubject, redis_server_binary
from opeval.subjects.ratelimiter._workload import LimiterWorkload, over_admitted, wrongly_rejected

__all__ = ["CHAOS_KINDS", "LimiterWorkload", "RateLimiterSubject", "over_admitted", "redis_server_binary",
           "wrongly_rejected"]
