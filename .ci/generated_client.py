"""Drives Strongroom through a client generated from its own GET /openapi.json (openapi-python-client):
tokenize -> pay -> refund -> list. Run by .ci/generated-client with the generated package on PYTHONPATH.
Only test card numbers. Exits non-zero, saying why, on the first surprise."""

import sys
import time

from strongroom_client import AuthenticatedClient
from strongroom_client.api.payments_ci import one_off
from strongroom_client.api.payments_data import get_payment, list_payments, list_transactions
from strongroom_client.api.payments_modifications import refund
from strongroom_client.api.refunds_data import list_refunds
from strongroom_client.api.tokens_create import import_cardholder_data
from strongroom_client.models import (
    CardholderData,
    HellgateToken,
    PaymentRequest,
    PaymentResponse,
    PaymentResponseList,
    RefundRequest,
    RefundResponse,
    RefundResponseList,
    TransactionResponseList,
)


def check(condition, what):
    if not condition:
        print(f"generated client: {what}", file=sys.stderr)
        sys.exit(1)


def main(base_url, api_key):
    client = AuthenticatedClient(
        base_url=base_url, token=api_key, prefix="", auth_header_name="X-API-Key",
        raise_on_unexpected_status=True,
    )
    card = CardholderData.from_dict({
        "account_number": "4111111111111111", "expiry_month": 4, "expiry_year": 2031,
        "cardholder_name": "Jane Holder", "security_code": "123",
    })
    token = import_cardholder_data.sync(client=client, body=card)
    check(isinstance(token, HellgateToken), f"tokenize answered {token!r}")
    check(token.masked_account_number == "411111XXXXXX1111", "the mask")

    request = PaymentRequest.from_dict({
        "amount": 1000, "currency_code": "EUR", "reference": "Order #1",
        "source": {"type": "token", "token_id": str(token.id)},
    })
    payment = one_off.sync(client=client, body=request)
    check(isinstance(payment, PaymentResponse), f"pay answered {payment!r}")
    check(str(payment.status) == "captured", f"payment status {payment.status}")
    check(payment.source.cardholder_name == "Jane Holder", "the source's cardholder")

    made = refund.sync(
        id=payment.id, client=client,
        body=RefundRequest.from_dict({"amount": 400, "currency_code": "EUR", "reference": "Return #1"}),
    )
    check(isinstance(made, RefundResponse), f"refund answered {made!r}")
    for _ in range(100):
        refunds = list_refunds.sync(id=payment.id, client=client)
        check(isinstance(refunds, RefundResponseList), f"refunds answered {refunds!r}")
        if refunds.data and str(refunds.data[0].status) == "completed":
            break
        time.sleep(0.1)
    check(str(refunds.data[0].status) == "completed", "the refund did not complete")
    shown = get_payment.sync(id=payment.id, client=client)
    check(shown.amount.refunded == 400, f"refunded amount {shown.amount.refunded}")

    listed = list_payments.sync(client=client, limit=10)
    check(isinstance(listed, PaymentResponseList), f"list answered {listed!r}")
    check(any(p.id == payment.id for p in listed.data), "the payment is not listed")
    transactions = list_transactions.sync(id=payment.id, client=client)
    check(isinstance(transactions, TransactionResponseList), f"transactions answered {transactions!r}")
    kinds = [str(t.type_) for t in transactions.data]
    check(kinds[:2] == ["authorization", "refund"], f"transactions {kinds}")
    print("generated client: tokenize -> pay -> refund -> list passed")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
