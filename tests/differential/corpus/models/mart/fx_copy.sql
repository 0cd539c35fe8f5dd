-- description: plain model over the undeclared source raw.fx
SELECT country, rate FROM raw.fx WHERE rate > 0
