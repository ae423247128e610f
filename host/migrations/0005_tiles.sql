-- Reading the log back by index (tiles, records for the bucket, repair): the lead of a leaf.
CREATE INDEX leads_idx ON leads (idx);
