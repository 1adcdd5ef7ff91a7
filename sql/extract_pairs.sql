-- Search-log pairs of one date range, deduplicated to one row per (query_id, product_id) and
-- joined to the catalog. Input relations: search_log(query_id, query, product_id, label, traffic,
-- event_date) and catalog(product_id, title, text, content_hash).
-- Parameters (qmark style, in this order):
--   1. start_date (DATE, inclusive)   2. end_date (DATE, exclusive)   3. include_undated (BOOLEAN)
-- Kept to ANSI SQL (CTEs, CAST, COALESCE, GROUP BY, INNER JOIN) so the same text runs on DuckDB and
-- on a warehouse engine that takes qmark parameters.
WITH in_range AS (
    SELECT query_id, query, product_id, label, traffic, event_date
    FROM search_log
    WHERE (event_date >= CAST(? AS DATE) AND event_date < CAST(? AS DATE))
       OR (event_date IS NULL AND CAST(? AS BOOLEAN))
),
deduped AS (
    SELECT
        query_id,
        MIN(query) AS query,
        product_id,
        AVG(label) AS label,
        COUNT(label) AS n_labels,
        MIN(label) AS label_min,
        MAX(label) AS label_max,
        SUM(COALESCE(traffic, 1)) AS traffic,
        COUNT(*) AS n_events,
        MIN(event_date) AS first_seen,
        MAX(event_date) AS last_seen
    FROM in_range
    GROUP BY query_id, product_id
)
SELECT
    d.query_id, d.query, d.product_id, d.label, d.n_labels, d.label_min, d.label_max,
    d.traffic, d.n_events, d.first_seen, d.last_seen,
    c.title, c.text, c.content_hash
FROM deduped AS d
INNER JOIN catalog AS c ON c.product_id = d.product_id
ORDER BY d.query_id, d.product_id
