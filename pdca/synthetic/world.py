"""The simulated world's calibration: who the customers are and how each channel behaves.

Figures, not code: the population by segment, region and industry; per channel its cost,
delivery, response and complaints; the weekly rhythm of touches, the lift of variant B and
the season; what the credit decisions and loans look like. `people`, `touches` and
`outcomes` draw from them.
"""

from __future__ import annotations

import numpy as np

from pdca.synthetic.campaign import EXCLUDED_INDUSTRIES

DAY = 86_400
HOUR = 3_600

SEGMENTS = ("sme", "salaried", "farmer", "student")
SEGMENT_SHARE = np.array([0.42, 0.33, 0.15, 0.10])
SCORE_MEAN = np.array([690.0, 700.0, 650.0, 630.0])
SCORE_SD = np.array([65.0, 55.0, 60.0, 50.0])
INCOME_MEDIAN = np.array([28_000.0, 12_000.0, 5_500.0, 2_200.0])
INCOME_SIGMA = np.array([0.6, 0.4, 0.45, 0.35])
REQUEST_MEDIAN = np.array([150_000.0, 50_000.0, 30_000.0, 8_000.0])
APPLY_AFFINITY = np.array([1.25, 1.0, 0.8, 0.5])
"""How much each segment wants an SME revolving line, relative to salaried customers."""

REGIONS = (
    "guangdong",
    "zhejiang",
    "jiangsu",
    "shandong",
    "henan",
    "sichuan",
    "hubei",
    "hunan",
    "fujian",
    "shanghai",
    "beijing",
    "anhui",
)
REGION_SHARE = np.array([14, 11, 11, 9, 8, 8, 7, 7, 7, 6, 6, 6], dtype=float) / 100

INDUSTRIES = (
    "retail",
    "manufacturing",
    "catering",
    "logistics",
    "wholesale",
    "construction",
    "it-services",
    "healthcare",
    "public-sector",
    "finance",
    "agriculture",
    "education",
    "p2p-lending",
    "crypto",
)
SME_INDUSTRY_SHARE = np.array([24, 18, 14, 10, 12, 8, 7, 2.5, 0, 2, 0, 0, 1.5, 1], dtype=float)
SALARIED_INDUSTRY_SHARE = np.array([10, 20, 6, 8, 5, 8, 14, 10, 10, 8, 0, 0, 0.6, 0.4], dtype=float)
EXCLUDED_INDUSTRY_INDEX = np.array([INDUSTRIES.index(name) for name in EXCLUDED_INDUSTRIES])

SURNAMES = ("wang", "li", "zhang", "liu", "chen", "yang", "zhao", "huang", "zhou", "wu")
MAIL_DOMAINS = ("example.com", "example.cn", "example.net")
MOBILE_PREFIX = np.array([13, 15, 17, 18, 19])

# --- the channels (index into CHANNELS) ---------------------------------------------------

PHONE, SMS, IM, APP_PUSH, EMAIL = range(5)
COST = np.array([8.0, 0.05, 0.03, 0.01, 0.02])
DELIVERY = np.array([0.62, 0.95, 0.90, 0.80, 0.92])
"""Phone: the call was answered; the others: the provider confirmed delivery."""
RESPONSE = np.array([0.34, 0.045, 0.06, 0.028, 0.022])
"""Given delivered: the customer showed interest (a reply, a click, a yes on the call)."""
APPLY_IF_RESPONDED = np.array([0.24, 0.30, 0.30, 0.28, 0.26])
APPLY_IF_SILENT = np.array([0.004, 0.0025, 0.0025, 0.002, 0.002])
EVENING_SHARE = np.array([0.45, 0.6, 0.65, 0.6, 0.55])
EVENING_RESPONSE = np.array([0.9, 1.12, 1.15, 1.1, 1.05])
"""Response in the evening window relative to noon: calls land worse, messages better."""
COMPLAINT_RATE = np.array([0.004, 0.003, 0.002, 0.0015, 0.0015])
"""Complaints per delivered touch, before the many-touches effect."""

TOUCH_WEEKLY = np.array([0.22, 0.42, 0.26])
"""Tier A, B, C: chance that a customer is due for a touch in a given week."""
VARIANT_B_LIFT = 1.15
SEASON_AMPLITUDE = 0.07
"""A mild four-week wave on response and application propensity."""

ORGANIC_WEEKLY = 0.0008
"""Chance per customer per week of applying without any campaign (branch or partner)."""
ATTRIBUTED_SHARE = 0.75
"""Share of touch-driven applications that carry the campaign id (the rest need attribution)."""

REJECT_REASONS = (
    "low_score",
    "high_debt_ratio",
    "incomplete_documents",
    "fraud_check",
    "excluded_industry",
)
TERMS = np.array([6, 12, 24, 36])
TERM_SHARE = np.array([0.2, 0.4, 0.25, 0.15])


COMPLAINT_CATEGORIES = ("too_many_messages", "wording", "privacy", "other")
