from django import forms

from .models import Model

ORDER_TYPES = [
    ("market", "Market"),
    ("limit", "Limit"),
    ("stop", "Stop"),
    ("stop_limit", "Stop limit"),
    ("trailing_stop", "Trailing stop"),
]


class ModelForm(forms.ModelForm):
    """The fields of a model people edit; saving goes through models_app.services."""

    allowed_order_types = forms.MultipleChoiceField(
        choices=ORDER_TYPES, required=False, widget=forms.CheckboxSelectMultiple
    )

    class Meta:
        model = Model
        fields = [
            "name",
            "description",
            "llm",
            "instructions",
            "rules",
            "trading_mode",
            "trading_style",
            "instrument",
            "buying_power",
            "margin_account",
            "allow_shorting",
            "allow_options_strategies",
            "allow_hedging",
            "allowed_order_types",
        ]
        widgets = {
            "description": forms.Textarea(attrs={"rows": 2}),
            "instructions": forms.Textarea(attrs={"rows": 4}),
            "rules": forms.Textarea(attrs={"rows": 4}),
        }
