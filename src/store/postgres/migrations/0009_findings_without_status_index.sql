-- findings_by_status made every resolve a non-HOT update: a new row version plus an entry
-- in each of findings' indexes, each on a random page of a million-finding table, while
-- no frequent read used it (listings walk findings in id order; the open-findings count
-- reads every open finding's row for its severity anyway). Without it no finding update
-- touches an indexed column, and the free tenth of each page lets PostgreSQL keep the new
-- version on the same page (a HOT update): one page written instead of five.
DROP INDEX findings_by_status;
ALTER TABLE findings SET (fillfactor = 90);
