"""The errors the API reports, in Zoho CRM's shape.

    ZohoError (400 INVALID_DATA)
    ├── InvalidData (400 INVALID_DATA)
    ├── InvalidToken (401 INVALID_TOKEN)
    ├── AuthenticationFailure (401 AUTHENTICATION_FAILURE)
    ├── ScopeMismatch (401 OAUTH_SCOPE_MISMATCH)
    ├── NoPermission (403 NO_PERMISSION)
    ├── InvalidUrlPattern (404 INVALID_URL_PATTERN)
    ├── InvalidModule (400 INVALID_MODULE)
    ├── InvalidRequestMethod (400 INVALID_REQUEST_METHOD)
    ├── MandatoryNotFound (400 MANDATORY_NOT_FOUND)
    ├── RequiredParamMissing (400 REQUIRED_PARAM_MISSING)
    ├── LimitExceeded (400 LIMIT_EXCEEDED)
    ├── DuplicateData (400 DUPLICATE_DATA)
    ├── InvalidQuery (400 INVALID_QUERY)
    ├── Ambiguity (400 AMBIGUITY_DURING_PROCESSING)
    ├── DiscretePaginationLimit (400 DISCRETE_PAGINATION_LIMIT_EXCEEDED)
    ├── PayloadTooLarge (413 REQUEST_ENTITY_TOO_LARGE)
    ├── InternalError (500 INTERNAL_ERROR)
    ├── NotSubscribed (400 NOT_SUBSCRIBED)
    ├── ExpectedFieldMissing (400 EXPECTED_FIELD_MISSING)
    └── DependentFieldMissing (400 DEPENDENT_FIELD_MISSING)

Request-level errors render as one object at the top level; per-record failures in a batch
are values (`to_json()` of an error) inside `data[]`.
"""

from __future__ import annotations


class ZohoError(Exception):
    """invalid data"""

    status_code = 400
    code = "INVALID_DATA"

    def __init__(self, message: str | None = None, **details: object) -> None:
        self.message = message or (self.__doc__ or "").strip()
        self.details = details
        super().__init__(self.message)

    def to_json(self) -> dict[str, object]:
        return {"code": self.code, "details": self.details, "message": self.message,
                "status": "error"}


class InvalidData(ZohoError):
    """invalid data"""


class InvalidToken(ZohoError):
    """invalid oauth token"""

    status_code, code = 401, "INVALID_TOKEN"


class AuthenticationFailure(ZohoError):
    """Authentication failed"""

    status_code, code = 401, "AUTHENTICATION_FAILURE"


class ScopeMismatch(ZohoError):
    """invalid oauth scope to access this URL"""

    status_code, code = 401, "OAUTH_SCOPE_MISMATCH"


class NoPermission(ZohoError):
    """permission denied"""

    status_code, code = 403, "NO_PERMISSION"


class InvalidUrlPattern(ZohoError):
    """the request URL specified is incorrect"""

    status_code, code = 404, "INVALID_URL_PATTERN"


class InvalidModule(ZohoError):
    """the module name given seems to be invalid"""

    code = "INVALID_MODULE"


class InvalidRequestMethod(ZohoError):
    """The http request method type is not a valid one"""

    code = "INVALID_REQUEST_METHOD"


class MandatoryNotFound(ZohoError):
    """required field not found"""

    code = "MANDATORY_NOT_FOUND"


class RequiredParamMissing(ZohoError):
    """One of the expected parameter is missing"""

    code = "REQUIRED_PARAM_MISSING"


class LimitExceeded(ZohoError):
    """the limit has been exceeded"""

    code = "LIMIT_EXCEEDED"


class DuplicateData(ZohoError):
    """duplicate data"""

    code = "DUPLICATE_DATA"


class InvalidQuery(ZohoError):
    """invalid query formed"""

    code = "INVALID_QUERY"


class Ambiguity(ZohoError):
    """ambiguity while processing the request"""

    code = "AMBIGUITY_DURING_PROCESSING"


class DiscretePaginationLimit(ZohoError):
    """The pagination limit has been exceeded. Use page_token to fetch more records."""

    code = "DISCRETE_PAGINATION_LIMIT_EXCEEDED"


class PayloadTooLarge(ZohoError):
    """the request body is too large"""

    status_code, code = 413, "REQUEST_ENTITY_TOO_LARGE"


class InternalError(ZohoError):
    """Internal Server Error"""

    status_code, code = 500, "INTERNAL_ERROR"


class NotSubscribed(ZohoError):
    """Not subscribed for actions-watch of the given channel"""

    code = "NOT_SUBSCRIBED"


class ExpectedFieldMissing(ZohoError):
    """Specify atleast one field"""

    code = "EXPECTED_FIELD_MISSING"


class DependentFieldMissing(ZohoError):
    """Dependent Field missing"""

    code = "DEPENDENT_FIELD_MISSING"
