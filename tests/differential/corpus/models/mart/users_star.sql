-- every column of raw.users, whatever they are: rebuilt when the source gains or loses one
SELECT * FROM raw.users
