"""The `[usage]` section: what tokens cost, for /usage and the web panel's usage page.

Prices are per million tokens, [input, output], in the currency you think in (the built-in
table is in US dollars). A model is priced by, in order: its "provider:model" key in
`usage.prices`, its model name in `usage.prices`, then the longest key of the built-in table
(or of `usage.prices`) its name starts with, so "gpt-4o-2024-08-06" is priced as "gpt-4o".
"""

from __future__ import annotations

from pydantic import Field, field_validator

from bot.config_base import Section

Price = tuple[float, float]

#: list prices of well-known models (USD per million tokens, input and output)
DEFAULT_PRICES: dict[str, Price] = {
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "o3": (2.00, 8.00),
    "o3-mini": (1.10, 4.40),
    "o4-mini": (1.10, 4.40),
    "claude-3-opus": (15.00, 75.00),
    "claude-opus-4": (15.00, 75.00),
    "claude-opus-4-5": (5.00, 25.00),
    "claude-3-5-sonnet": (3.00, 15.00),
    "claude-3-7-sonnet": (3.00, 15.00),
    "claude-sonnet-4": (3.00, 15.00),
    "claude-3-haiku": (0.25, 1.25),
    "claude-3-5-haiku": (0.80, 4.00),
    "claude-haiku-4-5": (1.00, 5.00),
}


class UsageConfig(Section):
    #: estimated cost per million tokens, [input, output], by "provider:model" or model name;
    #: overrides the built-in table of well-known models
    prices: dict[str, Price] = Field(default_factory=dict)

    @field_validator("prices")
    @classmethod
    def _not_negative(cls, prices: dict[str, Price]) -> dict[str, Price]:
        for key, (price_in, price_out) in prices.items():
            if price_in < 0 or price_out < 0:
                raise ValueError(f"{key!r}: a price cannot be negative")
        return prices

    def price(self, ref: str) -> Price | None:
        """The price of "provider:model" (or a bare model name); None when unknown."""
        if ref in self.prices:
            return self.prices[ref]
        # "openrouter:openai/gpt-4o" is priced as gpt-4o
        model = ref.partition(":")[2] or ref
        model = model.rpartition("/")[2].lower()
        table = {**DEFAULT_PRICES, **{k.lower(): v for k, v in self.prices.items()}}
        if model in table:
            return table[model]
        # the longest known name the model's starts with, at a name boundary
        known = [k for k in table if model.startswith(k) and model[len(k)] in "-:@."]
        return table[max(known, key=len)] if known else None

    def cost(self, ref: str, input_tokens: int, output_tokens: int) -> float:
        """The estimated cost of the tokens; 0 for a model without a known price."""
        price = self.price(ref)
        if price is None:
            return 0.0
        return (input_tokens * price[0] + output_tokens * price[1]) / 1e6
