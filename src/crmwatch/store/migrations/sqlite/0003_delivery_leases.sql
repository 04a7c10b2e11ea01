-- A worker owns a channel's deliveries while it holds the channel's lease: it alone sends
-- them, in order; a lease left by a dead worker lapses and another worker takes over.
CREATE TABLE delivery_leases (
    org_id INTEGER NOT NULL,
    channel_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    until_time INTEGER NOT NULL,
    PRIMARY KEY (org_id, channel_id)
);
