-- sitrep 0013: an alert rule may name several languages (language: [uk, ru]).
-- A list was accepted by the rules file and stored as the text '{uk,ru}', which no report's language
-- equals: the rule never fired and nothing said so. Existing rules keep their language, or the list
-- they were written with.
ALTER TABLE alert_rules
    ALTER COLUMN language DROP DEFAULT,
    ALTER COLUMN language TYPE text[] USING CASE WHEN language IS NULL THEN '{}'::text[]
                                                 WHEN language LIKE '{%}' THEN language::text[]  -- a list stored as text
                                                 ELSE ARRAY[language] END,
    ALTER COLUMN language SET DEFAULT '{}',
    ALTER COLUMN language SET NOT NULL;
