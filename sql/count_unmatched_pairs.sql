-- Pairs of the date range whose product is missing from the catalog: reported, never silently lost.
-- Parameters as in extract_pairs.sql: start_date, end_date, include_undated.
SELECT s.query_id, s.product_id, COUNT(*) AS n_events
FROM search_log AS s
LEFT JOIN catalog AS c ON c.product_id = s.product_id
WHERE c.product_id IS NULL
  AND ((s.event_date >= CAST(? AS DATE) AND s.event_date < CAST(? AS DATE))
       OR (s.event_date IS NULL AND CAST(? AS BOOLEAN)))
GROUP BY s.query_id, s.product_id
ORDER BY s.query_id, s.product_id
