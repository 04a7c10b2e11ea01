"""Realistic fake records for demos and benchmarks (`crmwatch seed`)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from faker import Faker

from crmwatch.domain.modules import Field, Module

TEXT_BY_NAME = {
    "First_Name": "first_name", "Last_Name": "last_name", "Full_Name": "name",
    "Company": "company", "Account_Name": "company", "Vendor_Name": "company",
    "Email": "email", "Secondary_Email": "email", "Phone": "phone_number",
    "Mobile": "phone_number", "Fax": "phone_number", "Home_Phone": "phone_number",
    "Other_Phone": "phone_number", "Website": "url", "Street": "street_address",
    "Mailing_Street": "street_address", "City": "city", "Mailing_City": "city",
    "State": "state", "Mailing_State": "state", "Zip_Code": "postcode",
    "Mailing_Zip": "postcode", "Country": "country", "Mailing_Country": "country",
    "Designation": "job", "Title": "job", "Description": "paragraph",
    "Skype_ID": "user_name", "Twitter": "user_name", "Industry": "bs",
}


def fake_record(module: Module, fake: Faker, rng: random.Random) -> dict[str, Any]:
    """One record's input values: every mandatory field, most others."""
    out: dict[str, Any] = {}
    for f in module.fields:
        if f.system or f.read_only or f.data_type in ("lookup", "ownerlookup", "userlookup",
                                                      "subform"):
            continue
        if not f.mandatory and rng.random() < 0.2:
            continue
        value = _value(f, fake, rng)
        if value is not None:
            out[f.api_name] = value
    return out


def _value(f: Field, fake: Faker, rng: random.Random) -> Any:
    t = f.data_type
    if t in ("text", "textarea", "phone", "website", "autonumber"):
        method = TEXT_BY_NAME.get(f.api_name)
        value = str(getattr(fake, method)()) if method else fake.sentence(nb_words=3)
        return value[: f.length]
    if t == "email":
        return fake.email()[: f.length]
    if t == "integer":
        return rng.randint(0, 10_000)
    if t == "bigint":
        return rng.randint(0, 10**12)
    if t in ("double", "currency"):
        return round(rng.uniform(0, 100_000), 2)
    if t == "percent":
        return round(rng.uniform(0, 100), 1)
    if t == "boolean":
        return rng.random() < 0.5
    if t == "date":
        return (datetime(2020, 1, 1) + timedelta(days=rng.randint(0, 2500))).date().isoformat()
    if t == "datetime":
        moment = datetime(2020, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randint(0, 2 * 10**8))
        return moment.isoformat()
    if t == "picklist":
        return rng.choice(f.picklist)
    if t == "multiselectpicklist":
        return rng.sample(list(f.picklist), k=min(len(f.picklist), rng.randint(1, 3)))
    return None


def records(module: Module, count: int, seed: int | None = None) -> Iterator[dict[str, Any]]:
    fake = Faker()
    rng = random.Random(seed)
    if seed is not None:
        Faker.seed(seed)
    for _ in range(count):
        yield fake_record(module, fake, rng)
