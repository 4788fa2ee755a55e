from django import forms

from . import services
from .models import Model


class ModelForm(forms.ModelForm):
    """The fields of a model people edit.

    Saving goes through models_app.services, which checks the rules (buying power not
    negative, order types from the fixed list, ...) and names what is wrong by field; the
    view puts those messages on the form. The checkboxes offer only the fixed list, and an
    unknown value posted anyway gets the service's message.
    """

    allowed_order_types = forms.MultipleChoiceField(
        choices=Model.OrderType.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        error_messages={"invalid_choice": services.unknown_order_type_message("%(value)s")},
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
            # A hint for the browser; the rule itself is services.model_problems.
            "buying_power": forms.NumberInput(attrs={"min": "0", "step": "0.01"}),
        }
