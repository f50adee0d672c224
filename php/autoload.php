<?php

// Loads the Paddock library without composer:
//
//     require '/path/to/paddock/php/autoload.php';
//
// With composer, its PSR-4 autoloader (composer.json) does the same.

declare(strict_types=1);

spl_autoload_register(static function (string $class): void {
    $prefix = 'Paddock\\';
    if (strncmp($class, $prefix, strlen($prefix)) !== 0) {
        return;
    }
    $file = __DIR__ . '/src/' . str_replace('\\', '/', substr($class, strlen($prefix))) . '.php';
    if (is_file($file)) {
        require $file;
    }
});
