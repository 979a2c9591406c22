-- 002: a column and a seed row (ALTER TABLE ... ADD COLUMN also fails when run twice).
ALTER TABLE visits ADD COLUMN agent TEXT;
INSERT INTO visits (path, agent) VALUES ('/migrations', '002');
