<?php
// Foreground round trips with pecl gearman (php-gearman): GearmanClient::doNormal in a loop.
//   php php_client.php HOST PORT FUNCTION COUNT
// Prints: jobs seconds p50_us p90_us p99_us max_us
$client = new GearmanClient();
$client->addServer($argv[1], (int)$argv[2]);
$n = (int)$argv[4];
$lat = [];
$t0 = hrtime(true);
for ($i = 0; $i < $n; $i++) {
    $a = hrtime(true);
    $client->doNormal($argv[3], "0123456789abcdef");
    if ($client->returnCode() != GEARMAN_SUCCESS) {
        fwrite(STDERR, "php_client: " . $client->error() . "\n");
        exit(1);
    }
    $lat[] = (hrtime(true) - $a) / 1000.0;
}
$secs = (hrtime(true) - $t0) / 1e9;
sort($lat);
printf("%d %.6f %.1f %.1f %.1f %.1f\n", $n, $secs, $lat[intdiv($n, 2)], $lat[(int)($n * 0.9)],
       $lat[(int)($n * 0.99)], $lat[$n - 1]);
