// Command benchpg runs a throwaway PostgreSQL server for scripts/bench: it
// starts one on loopback (internal/testenv), creates an empty database,
// prints its connection string on standard output, and runs until it is
// sent SIGTERM or SIGINT, when it stops the server and removes its files.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/latchkeyhq/latchkey/internal/testenv"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "benchpg:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	pg, err := testenv.LaunchPostgres()
	if err != nil {
		return err
	}
	defer pg.Close()
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(cctx, pg.DSN("postgres"))
	if err != nil {
		return err
	}
	_, err = conn.Exec(cctx, "CREATE DATABASE bench")
	conn.Close(context.Background())
	if err != nil {
		return err
	}
	fmt.Println(pg.DSN("bench"))
	<-ctx.Done()
	return nil
}
