-- A custom audit: the rows of the model it is attached to where :column is negative.
-- Used as positive(column => revenue).
SELECT * FROM this WHERE :column < 0
