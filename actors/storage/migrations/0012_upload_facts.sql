-- What the ingress learnt of a WebP upload it may store as is (issue 15.2): the boxes the
-- client says it painted (image pixels), and the pHash and local vision of the upload's own
-- pixels, measured during the one decode that checks it. NULL for every other upload (PNG,
-- JPEG, a WebP without the client's box list, with alpha or metadata, or wider than stored
-- screenshots): those keep the full decode, paint, downscale and encode.
-- The compress task still paints every box the server knows of that no client box covers.

ALTER TABLE screenshots ADD COLUMN upload_facts jsonb;
