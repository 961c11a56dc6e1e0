-- findings_by_status made every resolve move an index entry (a random leaf page of a
-- million-finding index) and every new finding add one, while no frequent read used it:
-- listings walk findings in id order, and the open-findings count visits every open
-- finding's row for its severity anyway.
DROP INDEX findings_by_status;
