"""Clients of a Zoho-compatible CRM (crmwatch itself or the real Zoho CRM).

`zoho.py` is the HTTP client (tokens, Zoho-shaped errors, the Bulk Read calls);
`bulkread.py` turns command-line choices into jobs and pages of zipped CSV files.
"""
