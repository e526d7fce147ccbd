-- 001: the initial schema. {{serial}} and {{blob}} are replaced per dialect.

CREATE TABLE bundles (
	id {{serial}},
	trust_domain TEXT NOT NULL UNIQUE,
	data {{blob}} NOT NULL,
	refresh_hint BIGINT NOT NULL DEFAULT 0,
	sequence_number BIGINT NOT NULL DEFAULT 0,
	created_at BIGINT NOT NULL,
	updated_at BIGINT NOT NULL
);

CREATE TABLE entries (
	id {{serial}},
	entry_id TEXT NOT NULL UNIQUE,
	spiffe_id TEXT NOT NULL,
	parent_id TEXT NOT NULL,
	similarity_key TEXT NOT NULL,
	selectors TEXT NOT NULL,
	dns_names TEXT NOT NULL,
	federates_with TEXT NOT NULL,
	x509_svid_ttl INTEGER NOT NULL DEFAULT 0,
	jwt_svid_ttl INTEGER NOT NULL DEFAULT 0,
	admin BOOLEAN NOT NULL DEFAULT FALSE,
	downstream BOOLEAN NOT NULL DEFAULT FALSE,
	expires_at BIGINT NOT NULL DEFAULT 0,
	store_svid BOOLEAN NOT NULL DEFAULT FALSE,
	hint TEXT NOT NULL DEFAULT '',
	created_at BIGINT NOT NULL,
	revision_number BIGINT NOT NULL DEFAULT 0
);

CREATE INDEX entries_spiffe_id ON entries (spiffe_id);
CREATE INDEX entries_parent_id ON entries (parent_id);
CREATE INDEX entries_similarity_key ON entries (similarity_key);
CREATE INDEX entries_hint ON entries (hint);
CREATE INDEX entries_expires_at ON entries (expires_at);

CREATE TABLE entry_selectors (
	entry_id BIGINT NOT NULL REFERENCES entries (id) ON DELETE CASCADE,
	type TEXT NOT NULL,
	value TEXT NOT NULL,
	PRIMARY KEY (entry_id, type, value)
);

CREATE INDEX entry_selectors_type_value ON entry_selectors (type, value, entry_id);

CREATE TABLE entry_federates_with (
	entry_id BIGINT NOT NULL REFERENCES entries (id) ON DELETE CASCADE,
	bundle_id BIGINT NOT NULL REFERENCES bundles (id),
	PRIMARY KEY (entry_id, bundle_id)
);

CREATE INDEX entry_federates_with_bundle ON entry_federates_with (bundle_id, entry_id);

CREATE TABLE attested_nodes (
	id {{serial}},
	spiffe_id TEXT NOT NULL UNIQUE,
	attestation_type TEXT NOT NULL,
	cert_serial_number TEXT NOT NULL DEFAULT '',
	cert_not_after BIGINT NOT NULL DEFAULT 0,
	new_cert_serial_number TEXT NOT NULL DEFAULT '',
	new_cert_not_after BIGINT NOT NULL DEFAULT 0,
	can_reattest BOOLEAN NOT NULL DEFAULT FALSE,
	created_at BIGINT NOT NULL
);

CREATE INDEX attested_nodes_cert_not_after ON attested_nodes (cert_not_after);

CREATE TABLE node_selectors (
	spiffe_id TEXT NOT NULL,
	type TEXT NOT NULL,
	value TEXT NOT NULL,
	PRIMARY KEY (spiffe_id, type, value)
);

CREATE INDEX node_selectors_type_value ON node_selectors (type, value, spiffe_id);

CREATE TABLE join_tokens (
	token TEXT NOT NULL PRIMARY KEY,
	expires_at BIGINT NOT NULL
);

CREATE INDEX join_tokens_expires_at ON join_tokens (expires_at);

CREATE TABLE ca_journal (
	journal_key TEXT NOT NULL PRIMARY KEY,
	data {{blob}} NOT NULL,
	updated_at BIGINT NOT NULL
);

CREATE TABLE federation_relationships (
	id {{serial}},
	trust_domain TEXT NOT NULL UNIQUE,
	bundle_endpoint_url TEXT NOT NULL,
	bundle_endpoint_profile TEXT NOT NULL,
	endpoint_spiffe_id TEXT NOT NULL DEFAULT '',
	created_at BIGINT NOT NULL,
	updated_at BIGINT NOT NULL
);

CREATE TABLE changes (
	seq {{serial}},
	kind TEXT NOT NULL,
	object_id TEXT NOT NULL,
	op TEXT NOT NULL,
	at BIGINT NOT NULL
);

CREATE INDEX changes_at ON changes (at);
