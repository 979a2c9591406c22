<?php
declare(strict_types=1);

// The release's front page: one parseable line, `commit=<hash> greeting=<value>`.
//
// Everything is read relative to __DIR__. nginx passes SCRIPT_FILENAME=$realpath_root/index.php,
// so __DIR__ is ROOT/releases/<hash>/www (the resolved release), never ROOT/www: a request sees
// exactly one release even when production flips while it runs, and opcache caches each release
// under its own path.
$release = dirname(__DIR__);

header('Content-Type: text/plain; charset=utf-8');
header('Cache-Control: no-store');

// REVISION is written by symdeploy at the release root.
$commit = trim((string) @file_get_contents($release . '/REVISION'));
// local.ini is copied from ROOT/common/app/config/local.ini by `make production-links`.
$config = @parse_ini_file($release . '/app/config/local.ini');

if ($commit === '' || $config === false || !isset($config['greeting'])) {
    http_response_code(500);
    echo "error: release $release is incomplete (REVISION or app/config/local.ini with greeting= missing)\n";
    exit;
}

header('X-Release-Commit: ' . $commit);
echo 'commit=', $commit, ' greeting=', $config['greeting'], "\n";
