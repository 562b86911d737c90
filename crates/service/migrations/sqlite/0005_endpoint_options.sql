-- A webhook's custom headers and endpoint authentication, sealed at rest
-- like its secret (one JSON document, XChaCha20-Poly1305, bound to the
-- webhook id). NULL: none, which is every webhook written before.
ALTER TABLE webhooks ADD COLUMN endpoint_enc TEXT;
