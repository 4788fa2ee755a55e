"""What every app shares, importing none of them: the domain's base errors, id parsing and
the REST API's error shape and strict parsing helpers.

Apps import downward (accounts, then models_app, then chat); what two of them share lives
here rather than in the higher one.
"""
