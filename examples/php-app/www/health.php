<?php
declare(strict_types=1);

// Health check for `promote.check`: 200 "ok" when the release that nginx resolved is complete.
header('Content-Type: text/plain; charset=utf-8');
header('Cache-Control: no-store');
$release = dirname(__DIR__);
if (!is_readable($release . '/REVISION') || !is_readable($release . '/app/config/local.ini')) {
    http_response_code(503);
    echo "not ready: $release\n";
    exit;
}
echo "ok\n";
