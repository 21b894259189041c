"""The TEST key pair and certificate that sign the SNS samples: public test material, not AWS's.

They were generated once for this project and are published with it, so they
prove nothing about who sent a request: a route verifies them only when its
``fetch`` serves :data:`TEST_SNS_CERTIFICATE_PEM` (``samples.amazon_ses.test_fetcher``
does, for :data:`TEST_SNS_CERT_URL`). Never configure that fetcher in production.
"""

from __future__ import annotations

#: Where the samples say their certificate is: an SNS host, as the provider requires.
#: Only a test fetcher serves it; AWS has no certificate at this URL.
TEST_SNS_CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-test.pem"

#: The TEST RSA private key (2048 bits, PKCS#8) the samples are signed with. Public.
TEST_SNS_PRIVATE_KEY_PEM = b"""\
-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDQ84AeJjz4Y9Kn
PnGQbJsJXCI/uSw2JG5ey1hS/KXkItXJPCVvI0WA2dyhrq8bMK4riQyjI0qv37V1
NGbbSkKdCidILO4VZOrSnqja9Dxi/8koQvNcmjww4Qg9TH7PLQlqPK/DYgKqWVMQ
hgwz4e0EWZRALQjIHqvwJg8P/rSNbTEFkoagNwD36qhi3hOQsrUTNjH6JIjavB8N
9DqpYzJOR22RZQd5lJ0qgcGmKfo0lWv56n52qB7EQ++SLeFjYZGTwUPiTNgjQ4xP
0D8JvBixccCwLDKmDAErb4gneapP2YvLf49jtgrowjVeXQmn6neZJqX/5PDjcL3G
0s5E+oH7AgMBAAECggEAWMrY6zbxmtYEmthgtvBH87LIxQ6B2KIjmrnLlzxQnIEn
GwQpnjA9ZVNvO++47pOBt/NdwOeK4fDtMdiqSs6kPwqlBbk+FS5U0Vrlw2GdVa5/
g1HsC7JpGJZQA4iBrLVlNlWClUMNgelCcJeeEOAVcc9FPf5FKJFMHFl39iKVBDGZ
NQwPS+C0y+s6K57Frihcur60SioBBHHjzn3ivTvgbYy2FP1PeHneasEGxI3YWyUV
OGUhgJcCWFTpAMGaXb3hl96skH1fTxp/62C0EB1vtlzyVuKItKzaHTQURSJXDUew
LCmb3NjwIFHF6LRIxCAZxmadjpmyS2anTkJPJ3A+gQKBgQDwxsF89BCei6PcLcyp
VOIokuqgQT0PNa3AbNn+OV4HAt/8GB8CnnFAzY7Y+n+wFTBuSUlU2hKcsSejHKOZ
sdZ12JapiUPw+NIaZ9/7s+ip2hyBzplNeC4y655xen4p9Hr4NZzRNRvk/MWVMNro
OJqZ0jvWKrY5ve8keHI383dtgQKBgQDeKZ3iXxrdbZhtxHHmGZ54bJxN+M5ekvGR
ZjcOalfIenZs6Zqez15wwnR5QUXbDXYApBCpPCu7ubRHz5iG5XkK3Zf1lYjE7e6l
4oJlyh8yfJAAL9VU3P83hfAsJsdoOLUyFs8q8NPNYSqIzCWL33V2rl/45a9TS2zA
5LmVOOVlewKBgH77I2IFyZoD5Qgis1P+a0Ogr9KSdWRHF/pqrdDwalFiR8RI6FnW
O75EaniuK5cupZsUVXNFixlOKKxSV0mgS41dC6Afv1AfuZapf6vcJvElEXG4Bouf
vSWns6j/Q/hWcl/iznBbBPoQARf8awabi5ViFaKOZgovzCY8y2gMo8iBAoGBANbe
F1autxP8AJYBjkuG8a71FMOQ5T+xDTScUJl/nsFGOC2kTihU1blnSTFRQRfY0A1U
oMydZorc1BE0Jggp/sTUhzk91BbrLIqCJa3/K+cvdDLKEKFQUQLJZv28z9XsKst0
JhAY9jDITlQaZiH/EOOlSSs4Mjb0Vw3E6fz6F1vrAoGAEUlr68HKYGQ87zcoSE37
JhhSJw+8NuJ6Z9SPeRGPHrqzc4aF7QI2wtOUhFv7LhfaESWkS/T6Va1y/G6or16Y
B1K2x5x0q0CeQOJZlPghnRQwxHxtj+f3rtY6yAJNlMdvY6RUXg5ONpHK9XMRX8bk
cFntbEHjgchTToqsr6W/W+k=
-----END PRIVATE KEY-----
"""

#: The self-signed TEST certificate holding the public half (no CA; 2025-2125).
TEST_SNS_CERTIFICATE_PEM = b"""\
-----BEGIN CERTIFICATE-----
MIIDBzCCAe+gAwIBAgIBATANBgkqhkiG9w0BAQsFADBGMSgwJgYDVQQKDB9ib3Vu
Y2UtbWlkZGxld2FyZSBURVNULCBub3QgQVdTMRowGAYDVQQDDBFzbnMuYW1hem9u
YXdzLmNvbTAgFw0yNTAxMDEwMDAwMDBaGA8yMTI1MDEwMTAwMDAwMFowRjEoMCYG
A1UECgwfYm91bmNlLW1pZGRsZXdhcmUgVEVTVCwgbm90IEFXUzEaMBgGA1UEAwwR
c25zLmFtYXpvbmF3cy5jb20wggEiMA0GCSqGSIb3DQEBAQUAA4IBDwAwggEKAoIB
AQDQ84AeJjz4Y9KnPnGQbJsJXCI/uSw2JG5ey1hS/KXkItXJPCVvI0WA2dyhrq8b
MK4riQyjI0qv37V1NGbbSkKdCidILO4VZOrSnqja9Dxi/8koQvNcmjww4Qg9TH7P
LQlqPK/DYgKqWVMQhgwz4e0EWZRALQjIHqvwJg8P/rSNbTEFkoagNwD36qhi3hOQ
srUTNjH6JIjavB8N9DqpYzJOR22RZQd5lJ0qgcGmKfo0lWv56n52qB7EQ++SLeFj
YZGTwUPiTNgjQ4xP0D8JvBixccCwLDKmDAErb4gneapP2YvLf49jtgrowjVeXQmn
6neZJqX/5PDjcL3G0s5E+oH7AgMBAAEwDQYJKoZIhvcNAQELBQADggEBAECrviQe
dO1ntt257WaHx1bj5MGp1UhU8mUrAKeA8wCl7L3Kl4uhr/DCqycKev1jIudSibf4
NzRtyY3CVoatNOXI/DmR5vmSOGj3d85HgLvGywkCTpjkVU+raqBFfBepkGvumxRg
4BnCoKOykj8I8afWdKBIrhZaVR5odhusBhm/KbhRbBsgZsgGimz3F7PvkeNJ+rI2
IWS6ef8ywtEyInTGSveZZ3HuZ2ryvh2wcqCS1wow4Ty5YlC/2NqLAA0xqX71AonV
+Tt7m1k/X2M1HxccQcRzh87UDokpoZji7IFZd5L8iUSyEjk+qdFPel2487LBYLFi
HoxuXci6Vx1ItJg=
-----END CERTIFICATE-----
"""
