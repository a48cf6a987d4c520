"""Request and response schemas of ``POST /recommend``.

Bad input never reaches the model: unknown fields, a ``k`` outside 1-10, more than 24 held
products, a code that is not shaped like a product code, and profile values outside the
bank-marketing categories or ranges answer 400 naming the field. A well-shaped code that is not
in the catalogue answers 422 naming it (services/recommend_routes.py).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from finbento.deposit_propensity import CATEGORIES
from finbento.recommender import MAX_K, MODEL_NAME, PRODUCT_CODES
from services.schemas import _ID

ProductCode = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z0-9_]{1,40}$"),
    Field(description="Santander product code, e.g. ind_cco_fin_ult1 (current account)",
          examples=["ind_cco_fin_ult1"]),
]  # fmt: skip


def _category(name: str, description: str) -> object:
    """Optional field taking one of the bank-marketing data's categories of ``name``."""
    values = CATEGORIES[name]
    return Annotated[
        Literal[values] | None, Field(description=f"{description}: {', '.join(values)}")
    ]


Job = _category("job", "Type of job")
Marital = _category("marital", "Marital status ('divorced' includes widowed)")
Education = _category("education", "Education")
Default = _category("default", "Has credit in default")
Housing = _category("housing", "Has a housing loan")
Loan = _category("loan", "Has a personal loan")
PreviousOutcome = _category("poutcome", "Outcome of the previous campaign")


class Profile(BaseModel):
    """What the bank knows about the client (UCI bank-marketing fields); every field optional."""

    model_config = ConfigDict(extra="forbid")

    age: int | None = Field(None, ge=0, le=120, description="Age in years")
    job: Job = None
    marital: Marital = None
    education: Education = None
    default: Default = None
    housing: Housing = None
    loan: Loan = None
    previous: int | None = Field(None, ge=0, le=100, description="Contacts before this offer")
    pdays: int | None = Field(
        None, ge=0, le=999, description="Days since the last contact (999 = never contacted)"
    )
    poutcome: PreviousOutcome = None


class RecommendRequest(BaseModel):
    """Whose recommendations: what the customer holds and, optionally, their profile."""

    model_config = ConfigDict(extra="forbid")

    customer_id: str | None = Field(None, pattern=_ID, description="The customer (logged only)")
    products_held: list[ProductCode] = Field(
        max_length=len(PRODUCT_CODES), description="Codes of the products held now (may be empty)"
    )
    profile: Profile | None = Field(None, description="Bank-marketing profile of the client")
    k: int = Field(3, ge=1, le=MAX_K, description=f"How many products to recommend, 1-{MAX_K}")


class RecommendQuery(BaseModel):
    """What the model service scores for one customer (codes already checked)."""

    products_held: list[str]
    profile: Profile | None = None
    k: int = Field(ge=1, le=MAX_K)


class RecommendedProduct(BaseModel):
    """One product to offer."""

    product: str = Field(description="Product code")
    name: str = Field(description="English name")
    score: float = Field(ge=0, le=1, description="Probability-like score (ranking key)")
    reason: str = Field(description="Why, in a few words")


class RecommendScores(BaseModel):
    """What the model service answers for one customer."""

    recommendations: list[RecommendedProduct] = Field(description="Best first, at most k")


class RecommendResponse(RecommendScores):
    """Recommendations for one customer, and the model that gave them."""

    customer_id: str | None = Field(None, description="As sent")
    model: str = Field(MODEL_NAME, description="Model name")
    model_version: str = Field(description="MLflow registered model version")
