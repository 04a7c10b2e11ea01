"""Third-party Zoho CRM clients against a real crmwatch server (`make clients-test`).

Not part of the main suite: the clients need other Pythons (Airbyte's connector < 3.12, the
async `zoho` SDK >= 3.12) and installs of their own, in `.venv-airbyte` and `.venv-zoho`.
"""
